"""A backend for worker processes: the real pyttsx3 worker, which also says what it imported and can speak in place.

Imports nothing but what the worker itself imports, so that what it reports
is the worker's own (test_worker_process.py, integration/test_voice_real.py).
"""

from __future__ import annotations

import sys

from voiceflex.voice import pyttsx3_worker
from voiceflex.voice.pyttsx3_worker import Pyttsx3Worker


class Probe(Pyttsx3Worker):
    """Pyttsx3Worker, plus what a test needs to see inside it."""

    def modules(self) -> list[str]:
        return sorted(sys.modules)

    def render_in_place(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        """A cue spoken by this process itself, as before each cue had a child: its state carries over."""
        forking = pyttsx3_worker._in_child
        pyttsx3_worker._in_child = lambda function, *args: function(*args)
        try:
            return self.render(text, voice, rate)
        finally:
            pyttsx3_worker._in_child = forking
