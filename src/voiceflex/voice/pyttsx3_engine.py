"""The default engine: pyttsx3 driving libespeak-ng, inside restartable worker processes."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
import hashlib
import json
import os
import weakref
from ctypes.util import find_library
from importlib import metadata
from pathlib import Path

import numpy as np

from voiceflex import files
from voiceflex.errors import MissingComponentError
from voiceflex.voice.engine import Clip, VoiceInfo, trim_silence
from voiceflex.voice.workers import CUE_TIMEOUT, WorkerPool, default_workers

# Lives in a module of its own so that worker processes import nothing else.
BACKEND = "voiceflex.voice.pyttsx3_worker:Pyttsx3Worker"
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib")
_FIX = "install espeak-ng: sudo apt-get install espeak-ng (or run scripts/setup)"


def check_installed() -> Path | str:
    """libespeak-ng's file; raises MissingComponentError unless pyttsx3 and libespeak-ng are both there."""
    if importlib.util.find_spec("pyttsx3") is None:
        raise MissingComponentError(
            "the Python package pyttsx3 is not installed",
            hint="pip install pyttsx3 (or run scripts/setup)",
        )
    library = _espeak_library()
    if library is None:
        raise MissingComponentError(
            "libespeak-ng is not installed; pyttsx3 speaks through it", hint=_FIX
        )
    return library


def _espeak_library() -> Path | str | None:
    # The usual places first: ctypes' find_library runs ldconfig (~50 ms), which
    # every warm `play` would otherwise pay before its first sound.
    for folder in _LIB_DIRS:
        path = Path(folder) / "libespeak-ng.so.1"
        if path.exists():
            return path.resolve()
    return find_library("espeak-ng")


def _fingerprint(library: Path | str) -> str:
    """What identifies this installation of pyttsx3 and libespeak-ng, cheaply."""
    parts: list[object] = []
    spec = importlib.util.find_spec("pyttsx3")
    for path in (spec.origin if spec else None, library):
        try:
            stat = os.stat(path) if path else None
        except OSError:
            stat = None
        parts.append([str(path), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


class Pyttsx3Engine:
    """pyttsx3 on Linux: espeak-ng voices, 22050 Hz mono output."""

    name = "pyttsx3"

    def __init__(self, *, timeout: float = CUE_TIMEOUT):
        self._library = check_installed()
        self.timeout = timeout
        self._info: tuple[str, list[VoiceInfo]] | None = None
        self._spare: WorkerPool | None = None  # the worker that answered _query, for render

    @property
    def version(self) -> str:
        return self._query()[0]

    def voices(self) -> list[VoiceInfo]:
        return list(self._query()[1])

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]:
        workers = max(1, min(workers, len(texts)))
        pool, self._spare = self._spare, None
        if pool is None:
            pool = WorkerPool(BACKEND, workers=workers, timeout=self.timeout)
        pool.workers = workers
        with pool:
            for text, (frames, sample_rate) in pool.render(texts, voice, rate):
                samples = np.frombuffer(frames, dtype="<i2").astype(np.int16, copy=False)
                yield text, Clip(trim_silence(samples), sample_rate)

    def _query(self) -> tuple[str, list[VoiceInfo]]:
        # Asked of a worker, not of pyttsx3 in this process: initialising
        # libespeak-ng here would put its crashes back into the caller's process.
        # Starting a worker costs ~0.1 s, so the answer is kept on disk for
        # this installation: a warm `play` then starts no worker at all.
        if self._info is None:
            memo = files.cache_path(f"pyttsx3-info-2-{_fingerprint(self._library)}.json")
            found = _memo_info(memo)
            if found is not None:
                version, voices = found
            else:
                # No memo: most likely an empty cache, whose cues are rendered
                # next.  The workers synthesize() will use start now, side by
                # side, and the first to be up answers; they are kept for the
                # cues (a worker's start-up is a third of a cold `play`'s
                # wait), and stopped when this engine goes if nothing was rendered.
                pool = WorkerPool(BACKEND, workers=default_workers(), timeout=self.timeout)
                try:
                    pool.start()
                    library, voices = pool.call("info")
                    # Asked here, where importlib.metadata is loaded already:
                    # importing it took a cold worker 30 ms.
                    version = f"pyttsx3 {metadata.version('pyttsx3')}, libespeak-ng {library}, fresh state per cue"
                except BaseException:
                    pool.close()
                    raise
                self._spare = pool
                weakref.finalize(self, pool.close)
                files.write_text_atomically(memo, json.dumps([version, voices]))
            self._info = (version, [VoiceInfo(i, n, tuple(langs)) for i, n, langs in voices])
        return self._info


def _memo_info(path: Path) -> tuple[str, list] | None:
    """(version, voices) from the memo at `path`, or None if it is missing or not what one holds.

    A memo damaged into `null`, `[1, 2]` or an empty voice list must not be
    taken for the engine's answer (it would say the engine has no voice for
    the routine's language).
    """
    try:
        data = files.read(path, 1 << 20)
        found = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None
    if not (isinstance(found, list) and len(found) == 2 and isinstance(found[0], str)
            and isinstance(found[1], list) and found[1]):
        return None
    for voice in found[1]:
        if not (isinstance(voice, list) and len(voice) == 3 and isinstance(voice[0], str)
                and isinstance(voice[1], str) and isinstance(voice[2], list)
                and all(isinstance(lang, str) for lang in voice[2])):
            return None
    return found[0], found[1]


