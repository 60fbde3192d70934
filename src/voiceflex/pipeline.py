"""The orchestrator: load -> compile -> synthesize -> render -> sink, one function per command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from voiceflex.errors import Diagnostic, RoutineError, UnknownVoiceError
from voiceflex.routine import read
from voiceflex.routine.model import Routine
from voiceflex.timeline import Timeline, compile_routine, speech_texts

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Plan:
    """A routine with its timeline and the rendered voice cues the timeline was timed with."""

    routine: Routine
    timeline: Timeline
    clips: dict  # text -> voice.Clip


def validate(ref: str) -> Timeline:
    """Check a routine without synthesizing speech; raises RoutineError with every problem.

    Speech lengths are not known here, so overlapping speech is left to `plan`.
    """
    return _checked(ref)[1]


def _checked(ref: str) -> tuple[Routine, Timeline]:
    """The routine and its structure (every cue, speech not yet timed), or every problem."""
    routine, problems = read(ref)
    try:
        structure = compile_routine(routine)
    except RoutineError as exc:
        problems = problems + exc.diagnostics
    if problems:
        raise RoutineError(problems)
    return routine, structure


def plan(ref: str, *, engine=None, on_voice_progress: Progress | None = None) -> Plan:
    """Load and compile a routine with real speech lengths, rendering cues not yet cached."""
    from voiceflex import voice

    routine, structure = _checked(ref)
    try:
        clips = voice.synthesize(speech_texts(structure), routine.voice, engine=engine,
                                 on_progress=on_voice_progress)
    except UnknownVoiceError as exc:
        if routine.voice.location is None:
            raise
        raise RoutineError([Diagnostic(routine.voice.location, f"{exc}; `voiceflex voices` lists them")]) from None
    timeline = compile_routine(routine, lambda text: clips[text].ms)
    return Plan(routine, timeline, clips)


def render(plan: Plan, *, start_sample: int = 0) -> Iterator[np.ndarray]:
    """The samples of a planned routine (int16, RATE Hz mono) from `start_sample` to the end.

    Every sink uses this: what `play` sends to the sound card is, sample for
    sample, what `export --format wav` writes.
    """
    from voiceflex.audio import mixer

    placed = mixer.placements(plan.timeline, plan.clips, plan.routine.tones)
    total = mixer.total_samples(plan.timeline)
    if start_sample:
        placed = [mixer.Placement(max(p.start - start_sample, 0), p.data[max(start_sample - p.start, 0):], p.scale)
                  for p in placed if p.start + len(p.data) > start_sample]
    for chunk in mixer.mix(placed, max(total - start_sample, 0)):
        yield mixer.to_pcm16(chunk)
