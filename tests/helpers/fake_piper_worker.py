"""A stand-in for voiceflex.voice.piper_worker in worker processes (test_piper.py): no model needed.

Speaks each sentence (split at ". ") as a 220 Hz square wave, 40 ms a character,
padded like Piper's output with faint noise that never reaches QUIET; a
sentence "crash" kills the worker.  Every request is appended to
$FAKE_PIPER_LOG as a JSON line.
"""

from __future__ import annotations

import json
import os
from array import array

PAD = [0, 1, -2, 3, -1, 2, 0, -3] * 5  # 40 samples of "silence" at most 3 in size


class FakePiperWorker:
    def render(self, text: str, model: str, config: str, scales: list[float]) -> tuple[list[bytes], int]:
        with open(os.environ["FAKE_PIPER_LOG"], "a") as log:
            log.write(json.dumps([text, model, config, list(scales)]) + "\n")
        sentences = []
        for sentence in text.split(". "):
            if sentence == "crash":
                os._exit(3)
            n = 40 * len(sentence) * 22050 // 1000
            tone = (8000 if (i // 50) % 2 else -8000 for i in range(n))
            sentences.append(array("h", [*PAD, *tone, *PAD]).tobytes())
        return sentences, int(os.environ.get("FAKE_PIPER_RATE", "22050"))
