"""Level and timing checks: loudness and peaks against the export targets (docs/check.md), clipping, and cues too long for their slot."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voiceflex.audio.output_format import MAX_TRUE_PEAK_DBTP, TARGET_LUFS
from voiceflex.spoken import number_words
from voiceflex.timeline import Event

LOUDNESS_TOLERANCE_LU = 1.0
CLIP_LEVEL = 32767  # |sample| at or above this is clipped (int16 full scale)
# The plan never lets speech overlap, but a cue that ends this close to the
# next one runs into it for a listener.
TIGHT_GAP_MS = 50
COUNTDOWN_STEP_MS = 1000  # one number a second (docs/routine-format.md, `hold`)
# A file decodes to the plan's length within 50 ms (docs/check.md).  It should also
# start where the plan does: an export measures 0 samples off; 20 ms is far
# under what a listener notices in a cue's timing, and catches an MP3 whose
# encoder delay was not removed (about 50 ms late).
MAX_LENGTH_ERROR_MS = 50
MAX_OFFSET_MS = 20

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Measure:
    """One measured quantity with its verdict ("pass" or "FAIL") and target."""

    name: str
    value: float | int | None
    unit: str
    verdict: str
    target: str


def loudness_measures(integrated_lufs: float, true_peak_dbtp: float, clipped: int) -> list[Measure]:
    """Integrated loudness, true peak and clipped samples against their targets."""
    lufs_ok = abs(integrated_lufs - TARGET_LUFS) <= LOUDNESS_TOLERANCE_LU
    peak_ok = true_peak_dbtp <= MAX_TRUE_PEAK_DBTP
    return [
        Measure("integrated loudness", integrated_lufs, "LUFS", _v(lufs_ok),
                f"{TARGET_LUFS:g} +- {LOUDNESS_TOLERANCE_LU:g}"),
        Measure("true peak", true_peak_dbtp, "dBTP", _v(peak_ok), f"<= {MAX_TRUE_PEAK_DBTP:g}"),
        Measure("clipped samples", clipped, "", _v(clipped == 0), "0"),
    ]


def alignment_measures(offset_ms: float | None, length_ms: float, planned_ms: float) -> list[Measure]:
    """A file's start offset and length against the plan (no offset measures as None: FAIL)."""
    offset_ok = offset_ms is not None and abs(offset_ms) <= MAX_OFFSET_MS
    length_error = length_ms - planned_ms
    return [
        Measure("start offset", None if offset_ms is None else round(offset_ms, 1) + 0.0, "ms", _v(offset_ok),
                f"within +-{MAX_OFFSET_MS} ms"),
        Measure("length vs plan", round(length_error, 1) + 0.0, "ms", _v(abs(length_error) <= MAX_LENGTH_ERROR_MS),
                f"within +-{MAX_LENGTH_ERROR_MS} ms"),
    ]


def clipped_samples(pcm: np.ndarray) -> int:
    """How many samples of int16 `pcm` sit at full scale (in chunks: `pcm` may be a long memmap)."""
    count = 0
    for i in range(0, len(pcm), _CHUNK):
        x = pcm[i:i + _CHUNK]
        count += int(np.count_nonzero((x >= CLIP_LEVEL) | (x <= -CLIP_LEVEL)))
    return count


def slot_problems(events: Sequence[Event]) -> dict[int, tuple[str, str]]:
    """Speech events (by index in `events`) too long for their slot: index -> (verdict, message).

    FAIL: a cue still speaking when the next one starts, or a countdown
    number longer than its second (the last one runs into the end tone).
    "warning": a cue ending less than 50 ms before the next.
    """
    speech = [(i, e) for i, e in enumerate(events) if e.kind == "speech"]
    numbers = {e.start_ms: n for _, e in speech if (n := _number_of(e.text)) is not None}
    problems: dict[int, tuple[str, str]] = {}
    for k, (i, e) in enumerate(speech):
        nxt = speech[k + 1][1] if k + 1 < len(speech) else None
        length = e.end_ms - e.start_ms
        if _in_countdown(e.start_ms, numbers) and length > COUNTDOWN_STEP_MS:
            problems[i] = ("FAIL", f"a countdown number lasting {length / 1000:.2f} s, longer than its second")
        elif nxt is not None and e.end_ms > nxt.start_ms:
            problems[i] = ("FAIL", f"still speaking {(e.end_ms - nxt.start_ms) / 1000:.2f} s into the next cue")
        elif nxt is not None and nxt.start_ms - e.end_ms < TIGHT_GAP_MS:
            problems[i] = ("warning", f"only {nxt.start_ms - e.end_ms} ms before the next cue")
    return problems


def _in_countdown(start_ms: int, numbers: dict[int, int]) -> bool:
    """A number spoken a second after the next higher number, or a second before the next lower one."""
    n = numbers.get(start_ms)
    if n is None:
        return False
    return (numbers.get(start_ms - COUNTDOWN_STEP_MS) == n + 1
            or numbers.get(start_ms + COUNTDOWN_STEP_MS) == n - 1)


_WORDS = {number_words(n): n for n in range(0, 1000)}


def _number_of(text: str | None) -> int | None:
    """The number a countdown cue says ("three" or "3"), or None."""
    t = re.sub(r"[^\w\- ]", "", (text or "")).strip().lower()
    if t.isdigit():
        return int(t)
    return _WORDS.get(t)


def _v(ok: bool) -> str:
    return "pass" if ok else "FAIL"
