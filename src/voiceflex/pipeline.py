"""The orchestrator: load -> compile -> synthesize -> render -> sink, one function per command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from voiceflex.audio.output_format import OutputFormat, output_format
from voiceflex.compiler import compile_routine
from voiceflex.config import Settings
from voiceflex.errors import Diagnostic, EngineError, RoutineError, UnknownVoiceError, VoiceflexError
from voiceflex.planned import Plan
from voiceflex.routine import read
from voiceflex.routine.model import Routine, VoiceSettings
from voiceflex.timeline import Timeline, speech_texts

__all__ = ["Plan", "chosen_voice", "export", "plan", "validate"]

Progress = Callable[[int, int], None]


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
    from voiceflex.files import cache_path

    return Plan(routine, timeline, clips, bed.bed_for(background, timeline, cache_path("beds")))


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


def export(ref: str, out_dir: Path | None = None, settings: Settings | None = None, *,
           output: OutputFormat | None = None, split: bool = False, on_voice_progress: Progress | None = None,
           on_progress: Progress | None = None, planned: Plan | None = None,
           on_warning: Callable[[Diagnostic], None] | None = None) -> Path:
    """Render a routine into `out_dir/<name>.<format>` (or, split, a folder of chapters and a playlist).

    `out_dir` defaults to the settings' `output`; `output` (the file format)
    to MP3 at the settings' `bitrate`.  `planned`, the routine's plan made
    beforehand with the same settings, is exported as it is (a caller that
    needs the plan too then plans once).
    `on_warning` gets each of the routine's warnings (Timeline.warnings) once it is planned.
    """
    from voiceflex import export as sink

    settings = settings or Settings()
    out_dir = settings.output if out_dir is None else out_dir
    output = output or output_format("mp3", settings.bitrate)
    if planned is None:
        planned = plan(ref, settings, on_voice_progress=on_voice_progress)
    for warning in planned.timeline.warnings if on_warning is not None else ():
        on_warning(warning)
    name = _file_stem(ref)
    track = planned.track(output)
    try:
        if split:
            return sink.write_split(track, planned.timeline, planned.routine, out_dir / name,
                                    output=output, on_progress=on_progress)
        return sink.write(track, planned.timeline, planned.routine, out_dir / f"{name}.{output.format}",
                          output=output, on_progress=on_progress)
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
