"""Speech for cues: TTS engines behind one protocol, and a content-addressed clip cache."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voiceflex.voice.cache import VoiceCache
    from voiceflex.voice.engine import Clip, Engine, VoiceInfo, resolve_voice, trim_silence
    from voiceflex.voice.espeak_cli import EspeakCliEngine
    from voiceflex.voice.piper_engine import PiperEngine
    from voiceflex.voice.pyttsx3_engine import Pyttsx3Engine
    from voiceflex.voice.synthesis import get_engine, list_voices, synthesize

# The names below are imported on first use (PEP 562): engine worker processes
# import this package too, and loading numpy and the routine model there
# would double the start-up time of every worker.
_EXPORTS = {
    "Clip": "engine",
    "Engine": "engine",
    "VoiceInfo": "engine",
    "resolve_voice": "engine",
    "trim_silence": "engine",
    "VoiceCache": "cache",
    "EspeakCliEngine": "espeak_cli",
    "PiperEngine": "piper_engine",
    "Pyttsx3Engine": "pyttsx3_engine",
    "get_engine": "synthesis",
    "list_voices": "synthesis",
    "synthesize": "synthesis",
}
__all__ = [
    "Clip",
    "Engine",
    "EspeakCliEngine",
    "PiperEngine",
    "Pyttsx3Engine",
    "VoiceCache",
    "VoiceInfo",
    "get_engine",
    "list_voices",
    "resolve_voice",
    "synthesize",
    "trim_silence",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
