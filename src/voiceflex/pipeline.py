"""The orchestrator: load -> compile -> synthesize -> render -> sink, one function per command."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from voiceflex.config import Settings
from voiceflex.errors import Diagnostic, EngineError, RoutineError, UnknownVoiceError, VoiceflexError
from voiceflex.routine import read
from voiceflex.routine.model import Routine, VoiceSettings
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
    bed: Any = None  # audio.bed.Bed under the whole track, or None


def validate(ref: str, settings: Settings | None = None, *, speech: bool = False, engine=None,
             on_voice_progress: Progress | None = None) -> Timeline:
    """Check a routine; raises RoutineError with every problem.

    Without `speech` only the structure is checked.  With it, the cues are
    also timed by their real spoken lengths (cached, else synthesized now) in
    the voice `settings` choose, so what `plan` would refuse (overlapping
    speech, an unknown voice or language) is found here too.  Structural
    problems are reported before anything is synthesized.
    """
    if speech:
        return plan(ref, settings, engine=engine, on_voice_progress=on_voice_progress).timeline
    return _checked(ref, settings)[1]


def _checked(ref: str, settings: Settings | None) -> tuple[Routine, Timeline]:
    """The routine, its voice as `settings` choose, and its structure (speech not yet timed), or every problem."""
    routine, problems = read(ref)
    routine = replace(routine, voice=(settings or Settings()).voice_for(routine.voice))
    try:
        structure = compile_routine(routine)
    except RoutineError as exc:
        problems = problems + exc.diagnostics
    if problems:
        raise RoutineError(problems)
    return routine, structure


def plan(ref: str, settings: Settings | None = None, *, engine=None, music: str | None = None,
         on_voice_progress: Progress | None = None) -> Plan:
    """Load and compile a routine with real speech lengths, rendering cues not yet cached.

    `settings` are the command line's and config file's choices (default:
    the routine's own voice); `engine` replaces the engine they name (tests).
    The sound bed is `music` if given (a file, a built-in bed, or "none"),
    else the settings' choice over the routine's `background`; its source is
    decoded or generated into the cache if it is not there yet.
    """
    from voiceflex import voice

    routine, structure = _checked(ref, settings)
    try:
        clips = voice.synthesize(speech_texts(structure), routine.voice, engine=engine,
                                 on_progress=on_voice_progress)
    except UnknownVoiceError as exc:
        raise _located(exc, routine.voice) from None
    except EngineError as exc:
        # Say where the cue that could not be spoken is: its first line in the routine.
        where = next((e.source for e in structure.events if e.kind == "speech" and e.text == exc.cue), None)
        if exc.cue is None or where is None:
            raise
        raise EngineError(f"{where}: {exc}", hint=exc.hint, cue=exc.cue) from None
    timeline = compile_routine(routine, lambda text: clips[text].ms)
    from voiceflex.audio import bed

    if music is None and settings is not None:
        music = settings.music_for(routine.background.sound if routine.background else None)
    background = bed.chosen(routine.background, music)
    if background is None:
        return Plan(routine, timeline, clips)
    from voiceflex.voice.cache import default_cache_dir

    return Plan(routine, timeline, clips, bed.bed_for(background, timeline, default_cache_dir() / "beds"))


def chosen_voice(routine_voice: VoiceSettings | None, settings: Settings | None = None) -> tuple[VoiceSettings, str]:
    """The voice settings a routine's `voice:` (None: a routine with none) come to, and the voice id they pick."""
    from voiceflex import voice

    wanted = (settings or Settings()).voice_for(routine_voice or VoiceSettings())
    engine = voice.get_engine(wanted.engine)
    try:
        return wanted, voice.resolve_voice(engine.voices(), wanted, engine.name)
    except UnknownVoiceError as exc:
        raise _located(exc, wanted) from None


def _located(exc: UnknownVoiceError, chosen: VoiceSettings) -> VoiceflexError:
    """An unknown voice at the line that chose it (routine or config file); a usage error if it was --voice."""
    if chosen.location is None:
        return exc
    return RoutineError([Diagnostic(chosen.location, f"{exc}; `voiceflex voices` lists them")])


class Track:
    """A planned routine's samples, levelled for a file format: any span, read by any number of threads.

    Levelled as SPEC 5 asks (-16 LUFS, true peak <= -1 dBTP; MP3 leaves room
    for what its encoder does to peaks).  The levels are planned on the first
    read, so an encoder can start up meanwhile; `close` stops the shaping of
    cues no reader needs any more.
    """

    def __init__(self, plan: Plan, *, fmt: str = "wav", bitrate: str = "64k"):
        from voiceflex.audio.mixer import total_samples
        from voiceflex.export.encoder import check_format, levels_for, parse_bitrate

        fmt = check_format(fmt)
        self.plan = plan
        self.total = total_samples(plan.timeline)
        self.has_bed = plan.bed is not None  # never silent: no cuts for encoding in parts
        self._aim = levels_for(fmt, parse_bitrate(bitrate) if fmt == "mp3" else 0)
        self._levels = None
        self._failed: BaseException | None = None  # raised again to every later reader
        self._lock = threading.Lock()

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """The int16 samples [start, stop) (RATE Hz mono), in chunks."""
        from voiceflex.audio import mixer

        levels = self._planned()
        for chunk in mixer.render(self.plan.timeline, levels.clips, levels.tones,
                                  gain_db=levels.gain_db, start_sample=start, stop_sample=stop,
                                  bed=self.plan.bed, bed_scale=levels.bed_scale):
            yield mixer.to_pcm16(chunk)

    def bed(self, start: int, stop: int) -> np.ndarray:
        """The sound bed's own part of samples [start, stop) as mixed (float32; zero outside the track)."""
        import numpy as np

        out = np.zeros(max(stop - start, 0), np.float32)
        a, b = max(start, 0), min(stop, self.total)
        if self.plan.bed is not None and a < b:
            levels = self._planned()
            gain = np.float32(10.0 ** (levels.gain_db / 20.0))
            out[a - start:b - start] = self.plan.bed.chunk(a, b, levels.bed_scale) * gain
        return out

    def close(self) -> None:
        with self._lock:
            if self._levels is not None:
                self._levels.close()

    def _planned(self):
        from voiceflex.audio.levels import plan_levels
        from voiceflex.voice.cache import default_cache_dir

        with self._lock:
            if self._failed is not None:  # each reader of a failed plan fails at once
                raise self._failed
            if self._levels is None:
                # Streaming: the gain is known after one measurement; cues are
                # shaped on another core, ahead of the mix, while the first
                # chunks already go out.  The measurement is kept beside the
                # voice cache: rendering the routine again (export after play,
                # a second export) starts without it.
                target, ceiling = self._aim
                try:
                    self._levels = plan_levels(
                        self.plan.timeline, self.plan.clips, self.plan.routine.tones,
                        target_lufs=target, ceiling_dbtp=ceiling, streaming=True,
                        memo_dir=default_cache_dir() / "levels", bed=self.plan.bed)
                except BaseException as e:
                    self._failed = e
                    raise
            return self._levels


def render(plan: Plan, *, fmt: str = "wav", bitrate: str = "64k",
           start_sample: int = 0) -> Iterator[np.ndarray]:
    """The samples of a planned routine (int16, RATE Hz mono) from `start_sample` to the end.

    `play` takes the WAV levels: what it sends to the sound card is, sample
    for sample, what `export --format wav` writes.
    """
    track = Track(plan, fmt=fmt, bitrate=bitrate)
    try:
        yield from track.read(start_sample)
    finally:
        track.close()


def export(ref: str, out_dir: Path | None = None, settings: Settings | None = None, *, fmt: str = "mp3",
           split: bool = False, on_voice_progress: Progress | None = None,
           on_progress: Progress | None = None, planned: Plan | None = None,
           on_warning: Callable[[Diagnostic], None] | None = None) -> Path:
    """Render a routine into `out_dir/<name>.<fmt>` (or, split, a folder of chapters and a playlist).

    `out_dir` defaults to the settings' `output`; MP3s take the settings' `bitrate`.
    `planned`, the routine's plan made beforehand with the same settings, is
    exported as it is (a caller that needs the plan too then plans once).
    `on_warning` gets each of the routine's warnings (Timeline.warnings) once it is planned.
    """
    from voiceflex import export as sink
    from voiceflex.export.encoder import check_format, parse_bitrate

    settings = settings or Settings()
    out_dir = settings.output if out_dir is None else out_dir
    bitrate = settings.bitrate
    fmt = check_format(fmt)
    if fmt == "mp3":
        parse_bitrate(bitrate)  # a bad argument is reported before any work
    if planned is None:
        planned = plan(ref, settings, on_voice_progress=on_voice_progress)
    for warning in planned.timeline.warnings if on_warning is not None else ():
        on_warning(warning)
    name = _file_stem(ref)
    track = Track(planned, fmt=fmt, bitrate=bitrate)
    try:
        if split:
            return sink.write_split(track, planned.timeline, planned.routine, out_dir / name,
                                    fmt=fmt, bitrate=bitrate, on_progress=on_progress)
        return sink.write(track, planned.timeline, planned.routine, out_dir / f"{name}.{fmt}",
                          fmt=fmt, bitrate=bitrate, on_progress=on_progress)
    finally:
        track.close()


def _file_stem(ref: str) -> str:
    """The routine's name for its exported file: the YAML file's own name, kept inside the folder."""
    from voiceflex.export import slug

    path = Path(ref)
    stem = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if stem and stem.isprintable() and not stem.startswith(".") and "\\" not in stem:
        return stem
    return slug(stem, fallback="routine")
