"""The default engine: pyttsx3 driving libespeak-ng, inside restartable worker processes."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from ctypes.util import find_library

import numpy as np

from voiceflex.errors import MissingComponentError
from voiceflex.voice.engine import Clip, VoiceInfo, trim_silence
from voiceflex.voice.workers import CUE_TIMEOUT, WorkerPool

# Lives in a module of its own so that worker processes import nothing else.
BACKEND = "voiceflex.voice.pyttsx3_backend:Pyttsx3Backend"
_FIX = "install espeak-ng: sudo apt-get install espeak-ng (or run scripts/setup)"


def check_installed() -> None:
    """Raise MissingComponentError unless pyttsx3 and libespeak-ng are both there."""
    if importlib.util.find_spec("pyttsx3") is None:
        raise MissingComponentError(
            "the Python package pyttsx3 is not installed",
            hint="pip install pyttsx3 (or run scripts/setup)",
        )
    if find_library("espeak-ng") is None:
        raise MissingComponentError(
            "libespeak-ng is not installed; pyttsx3 speaks through it", hint=_FIX
        )


class Pyttsx3Engine:
    """pyttsx3 on Linux: espeak-ng voices, 22050 Hz mono output."""

    name = "pyttsx3"

    def __init__(self, *, timeout: float = CUE_TIMEOUT):
        check_installed()
        self.timeout = timeout
        self._info: tuple[str, list[VoiceInfo]] | None = None

    @property
    def version(self) -> str:
        return self._query()[0]

    def voices(self) -> list[VoiceInfo]:
        return list(self._query()[1])

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]:
        workers = max(1, min(workers, len(texts)))
        with WorkerPool(BACKEND, workers=workers, timeout=self.timeout) as pool:
            for text, (frames, sample_rate) in pool.render(texts, voice, rate):
                samples = np.frombuffer(frames, dtype="<i2").astype(np.int16, copy=False)
                yield text, Clip(trim_silence(samples), sample_rate)

    def _query(self) -> tuple[str, list[VoiceInfo]]:
        # Asked of a worker, not of pyttsx3 in this process: initialising
        # libespeak-ng here would put its crashes back into the caller's process.
        if self._info is None:
            with WorkerPool(BACKEND, timeout=self.timeout) as pool:
                version, voices = pool.call("info")
            self._info = (version, [VoiceInfo(i, n, tuple(langs)) for i, n, langs in voices])
        return self._info
