"""Runs inside a worker process: pyttsx3 speaking one cue at a time into a WAV file.

Imports only the standard library and pyttsx3, so a worker starts quickly.
"""

from __future__ import annotations

import os
import threading
import time
import wave
from importlib import metadata


class Pyttsx3Backend:
    """Runs inside a worker process: one pyttsx3 engine, one cue at a time."""

    def __init__(self) -> None:
        import pyttsx3
        from pyttsx3.drivers import _espeak

        self._espeak = _espeak
        _poll_faster()
        self._tts = pyttsx3.init("espeak")
        self._finished = threading.Event()
        self._completed = False
        self._tts.connect("finished-utterance", self._on_finished)
        self._voice: str | None = None
        self._rate: int | None = None
        # The worker's own scratch folder (its working directory); the pool removes it.
        self._wav = os.path.abspath("cue.wav")

    def _on_finished(self, name: str | None, completed: bool) -> None:
        # Called on espeak's synthesis thread, after the WAV file is written.
        self._completed = completed
        self._finished.set()

    def info(self) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
        library = (self._espeak.Info() or b"?").decode("utf-8", "replace")
        version = f"pyttsx3 {metadata.version('pyttsx3')}, libespeak-ng {library}"
        voices = [(v.id, v.name, tuple(v.languages or ())) for v in self._tts.getProperty("voices")]
        return version, voices

    def render(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        if not text.strip():
            # save_to_file("") fails with a bare AssertionError; say what it is.
            raise ValueError("there is no text to speak")
        if voice != self._voice:
            self._tts.setProperty("voice", voice)
            self._voice = voice
        if rate != self._rate:
            self._tts.setProperty("rate", rate)
            self._rate = rate
        if os.path.exists(self._wav):
            os.remove(self._wav)  # so a cue that writes nothing cannot pass as the last one
        self._finished.clear()
        # Exactly one save per runAndWait: pyttsx3 writes only the last one queued.
        self._tts.save_to_file(text, self._wav)
        self._tts.runAndWait()
        # runAndWait can return while espeak is still synthesising on its own
        # thread.  Wait for the end of the utterance (the file is complete then),
        # then for the thread to go idle: starting the next cue while it is busy
        # makes pyttsx3 cancel that next cue.  A hang here is the parent's to catch.
        self._finished.wait()
        while self._espeak.IsPlaying():
            time.sleep(0.001)
        if not self._completed:
            raise RuntimeError("espeak cancelled the utterance")
        with wave.open(self._wav, "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise RuntimeError("pyttsx3 wrote something other than 16-bit mono audio")
            sample_rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
        if not frames.strip(b"\0"):
            raise RuntimeError("pyttsx3 wrote no sound")
        return frames, sample_rate


class _QuickSleep:
    """Stands in for the time module inside pyttsx3's espeak driver."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.0005))


def _poll_faster() -> None:
    # pyttsx3's espeak driver notices the end of an utterance by polling with
    # time.sleep(0.01) (drivers/espeak.py, startLoop), while espeak needs about
    # 2.5 ms for a short cue: three quarters of every cue was spent asleep.
    # Polling every 0.5 ms in this worker changes nothing else (measured:
    # 10.3 -> 2.6 ms a cue).  If a later pyttsx3 drops the module-level `time`,
    # this is skipped and cues are just slower.
    from pyttsx3.drivers import espeak as driver

    if getattr(driver, "time", None) is time:
        driver.time = _QuickSleep  # type: ignore[assignment]
