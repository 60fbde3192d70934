"""A speech backend for worker processes that fails on request (test_reliability.py).

Kept apart from the test module, and free of numpy, so that a worker starts
in a fraction of a second: its start-up counts against the cue's timeout.
"""

from __future__ import annotations

import math
import os
import threading
from array import array
from pathlib import Path

RATE = 22050


class FlakyBackend:
    """A cue containing "crash" kills the worker, "hang" hangs it, "wobble" kills it only the
    first time ($FLAKY_MARKER records that); any other cue is spoken as helpers.fakes.fake_clip is."""

    def render(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        if "crash" in text:
            os._exit(3)
        if "hang" in text:
            threading.Event().wait(60)
        if "wobble" in text and not os.path.exists(os.environ["FLAKY_MARKER"]):
            Path(os.environ["FLAKY_MARKER"]).touch()
            os._exit(3)
        n = (50 * len(text) + 100) * RATE // 1000  # helpers.fakes.fake_ms
        samples = array("h", (round(1000 * math.sin(2 * math.pi * 220 * i / RATE)) for i in range(n)))
        return samples.tobytes(), RATE
