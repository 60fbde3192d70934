"""Turn cue texts into clips: read the voice cache, render what is missing, store it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from voiceflex.errors import EngineError, UsageError
from voiceflex.routine.model import VoiceSettings
from voiceflex.spoken import normalise
from voiceflex.voice.cache import VoiceCache
from voiceflex.voice.engine import Clip, Engine, VoiceInfo, resolve_voice
from voiceflex.voice.espeak_cli import EspeakCliEngine
from voiceflex.voice.piper_engine import PiperEngine
from voiceflex.voice.pyttsx3_engine import Pyttsx3Engine
from voiceflex.voice.workers import default_workers

ENGINES: dict[str, Callable[[], Engine]] = {
    Pyttsx3Engine.name: Pyttsx3Engine,
    EspeakCliEngine.name: EspeakCliEngine,
    PiperEngine.name: PiperEngine,
}


def get_engine(settings_or_name: VoiceSettings | str = "pyttsx3") -> Engine:
    """The engine a routine's voice settings (or an engine name) ask for."""
    if isinstance(settings_or_name, VoiceSettings):
        name = settings_or_name.engine
    else:
        name = settings_or_name
    factory = ENGINES.get(name.lower())
    if factory is None:
        raise UsageError(
            f'there is no voice engine "{name}"', hint=f"choose one of: {', '.join(ENGINES)}"
        )
    return factory()


def list_voices(engine_name: str = "pyttsx3") -> list[VoiceInfo]:
    """The voices `engine_name` can speak with."""
    return get_engine(engine_name).voices()


def synthesize(
    texts: Iterable[str],
    settings: VoiceSettings,
    *,
    engine: Engine | None = None,
    cache: VoiceCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, Clip]:
    """Every distinct text of `texts` mapped to its clip, in first-seen order.

    Cached clips are read; the rest are rendered by `engine` (default: the one
    `settings` names) in up to `workers` processes (default min(2, CPUs)) and
    stored.  A cached clip is never rendered again: pyttsx3's output for one
    text varies by a few percent with what it rendered before, and the timing
    planned from a clip must hold when the routine is exported later.

    Each text is spoken as `spoken.normalise` makes it (numbers as words,
    unspeakable characters dropped); the clip is cached under that text.
    `on_progress(done, total)` counts distinct spoken texts: it is called once after
    the cache was read (done = cached ones) and after each rendered clip.
    """
    authored = list(dict.fromkeys(texts))
    for text in authored:
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"a spoken cue must have text, not {text!r}")
        if "\0" in text:  # no engine can take it: a C string ends there
            raise UsageError(f"a spoken cue cannot contain a NUL character: {text!r}")
    # Engines speak the normalised text, and the cache keys on it: two texts
    # said alike ("30 s" and "thirty s") share one clip.
    said = {t: normalise(t, settings.language) for t in authored}
    unsayable = next((t for t in authored if not said[t]), None)
    if unsayable is not None:
        raise UsageError(f"nothing in the cue {unsayable!r} can be spoken")
    try:
        clips_said = _said_clips(list(dict.fromkeys(said.values())), settings, engine=engine, cache=cache,
                                 on_progress=on_progress, workers=workers)
    except EngineError as exc:  # name the cue as its author wrote it, so its line can be found
        if exc.cue is None:
            raise
        cue = next((t for t in authored if said[t] == exc.cue), exc.cue)
        raise EngineError(str(exc), hint=exc.hint, cue=cue) from None
    return {t: clips_said[said[t]] for t in authored}


def _said_clips(distinct: list[str], settings: VoiceSettings, *, engine: Engine | None,
                cache: VoiceCache | None, on_progress: Callable[[int, int], None] | None,
                workers: int | None) -> dict[str, Clip]:
    """Each normalised text of `distinct` mapped to its clip, from the cache or rendered."""
    if not distinct:
        return {}
    if workers is None:
        workers = default_workers()
    if workers < 1:
        raise ValueError("workers must be at least 1")
    engine = engine if engine is not None else get_engine(settings)
    cache = cache if cache is not None else VoiceCache()

    voice = resolve_voice(engine.voices(), settings, engine.name)
    version = engine.version
    keys = {t: cache.key(t, engine.name, version, voice, settings.rate) for t in distinct}
    clips: dict[str, Clip] = {}
    for text in distinct:
        clip = cache.get(keys[text])
        if clip is not None:
            clips[text] = clip
    missing = [t for t in distinct if t not in clips]
    if on_progress is not None:
        on_progress(len(clips), len(distinct))

    if missing:
        cache.sweep()
        rendered = engine.render(missing, voice, settings.rate, workers=workers)
        try:
            for text, clip in rendered:
                # Another process may have stored this text meanwhile: use its
                # clip, so that exports running at once time the routine alike.
                clips[text] = cache.put(keys[text], clip)
                if on_progress is not None:
                    on_progress(len(clips), len(distinct))
        finally:
            # Stop the engine's workers now, not whenever a traceback holding
            # this frame is let go of.
            close = getattr(rendered, "close", None)
            if close is not None:
                close()
        unspoken = [t for t in missing if t not in clips]
        if unspoken:
            raise EngineError(f'{engine.name} returned no audio for "{unspoken[0]}"', cue=unspoken[0])
    return {t: clips[t] for t in distinct}
