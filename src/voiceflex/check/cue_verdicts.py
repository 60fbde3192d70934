"""The verdict on each spoken cue: heard in its slot, on time and whole, or why not."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voiceflex.check.recogniser import RATE_16K, Heard, Recogniser
from voiceflex.timeline import Event

# How much audio around a cue's planned span is decoded.  The lead-in lets
# the decoder settle into silence before the first word (with only 100 ms it
# heard "one" as "well" or "when" a few times in 181 built-in cues; with
# 300 ms, none); the tail covers espeak's soft word endings.  Both stop short
# of a neighbouring cue's audio when cues are closer than that.
LEAD_IN_MS = 300
TAIL_MS = 300
MIN_MARGIN_MS = 50

# A recognised cue must begin this close to its planned start: a cue shifted
# by a second can still be heard whole inside its (widened) window, but its
# first word then begins far from where the plan puts it.  On correct
# renders and exports (1,145 cues, voices at 110 to 260 words a minute) the
# decoder placed first words 60 ms early to 100 ms late ("n" and "m" begin
# softly); a search forced onto a tone or silence where a cue is missing
# starts its words early, into the lead-in, by 150 ms and more.
EARLY_TOLERANCE_MS = 100
LATE_TOLERANCE_MS = 200

# A cue's span whose loudest 20 ms stay under this is silent: the decoder,
# forced to choose among the routine's cues, would "hear" one in the dither.
SILENCE_DBFS = -55.0
SILENCE_FRAME_MS = 20

# Second try with a shorter lead-in and other dither: decoding is a search
# with pruning, and a cue the first pass missed is sometimes found by the
# second.  It cannot make a misplaced cue pass: the onset rule still applies.
ATTEMPTS = ((LEAD_IN_MS, 0), (150, 1))

# The decoder spans a cue it hears with its words from end to end: on the
# built-in routines (rendered and exported) every recognised cue spanned at
# least 95% of its clip's length.  Heard in much less time than its clip
# lasts, a cue is not what is there: a truncated cue, or another cue that
# merely sounds alike (espeak's "one" decodes as "well done", 0.4 s of
# speech for a 0.66 s clip).  Such a look-alike is set aside and the window
# decoded again without it, at most this many times.
MIN_SPAN_SHARE = 0.8
MAX_SET_ASIDE = 2
# Likewise a look-alike heard starting well after the slot's start: clips
# begin with their first sound (their silence is trimmed), so whatever cue
# is really there starts with the slot, and on correct renders the decoder's
# first word was never more than 100 ms late.  (Early is another matter: a
# tone or glide just before a cue can pull its first word 150 ms early.)
# At 260 words a minute espeak's "Well done." decodes as "one" heard
# 140 ms in, the "we-" left to the silence model.
LOOK_ALIKE_ONSET_MS = 120


@dataclass(frozen=True)
class CueResult:
    """The verdict on one speech event: "pass", "FAIL" or "unchecked", why, and what was heard."""

    verdict: str
    reason: str
    heard: str | None = None
    onset_ms: int | None = None
    # Failed only because another whole cue of the grammar fits the slot, on
    # time and long enough ("now" heard as the routine's "no"): the words are
    # in doubt, not the timing.
    look_alike: bool = False



def check_cues(
    events: Sequence[Event],
    pcm16k: np.ndarray,
    recogniser: Recogniser,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[CueResult]:
    """A verdict for each speech event of `events` (sorted by start), in that order.

    `pcm16k` is the whole track, int16 at 16 kHz, sample 0 at time 0.
    """
    speech = [e for e in events if e.kind == "speech"]
    tones = ToneSpans(events)
    total_ms = len(pcm16k) * 1000 / RATE_16K
    results = []
    for i, event in enumerate(speech):
        before = speech[i - 1].end_ms if i > 0 else None
        after = speech[i + 1].start_ms if i + 1 < len(speech) else None
        results.append(_check_cue(event, before, after, pcm16k, total_ms, recogniser, tones, seed=i))
        if on_progress is not None:
            on_progress(i + 1, len(speech))
    return results


class ToneSpans:
    """The planned tones of a timeline, to be hidden from a cue's decode outside the cue itself.

    A tone in a cue's lead-in (a `done` tone, then "no") is not silence to
    the decoder: it starts the cue's first word on the tone, up to the whole
    lead-in early, and a correct render failed as "heard 0.30 s early".
    The plan says where every tone is, so its samples there are muted before
    decoding; only outside the cue's own span, so a glide spoken over
    ("Breathe in" on the inhale glide) and anything misplaced onto the cue
    are still heard.
    """

    def __init__(self, events: Sequence[Event]):
        self.spans = sorted((e.start_ms, e.end_ms) for e in events if e.kind == "tone")
        self.starts = [a for a, _ in self.spans]
        self.longest = max((b - a for a, b in self.spans), default=0)

    def muted(self, window: np.ndarray, a: float, event: Event) -> np.ndarray:
        """`window` (16 kHz, from track time `a` ms) with tones outside `event`'s span set to silence."""
        b = a + len(window) * 1000 / RATE_16K
        first = bisect.bisect_left(self.starts, a - self.longest)
        out = None
        for start, end in self.spans[first:bisect.bisect_right(self.starts, b)]:
            for lo, hi in ((max(start, a), min(end, event.start_ms)), (max(start, event.end_ms), min(end, b))):
                if hi > lo:
                    out = window.copy() if out is None else out
                    out[round((lo - a) * RATE_16K / 1000):round((hi - a) * RATE_16K / 1000)] = 0
        return window if out is None else out


def _check_cue(event: Event, prev_end: int | None, next_start: int | None, pcm16k: np.ndarray,
               total_ms: float, recogniser: Recogniser, tones: ToneSpans, seed: int) -> CueResult:
    text = event.text or ""
    if text in recogniser.unchecked:
        return CueResult("unchecked", recogniser.unchecked[text])
    if event.start_ms >= total_ms:
        return CueResult("FAIL", "the audio ends before this cue")
    expected = recogniser.phrases[text]
    length = event.end_ms - event.start_ms
    span = pcm16k[round(event.start_ms * RATE_16K / 1000):round(event.end_ms * RATE_16K / 1000)]
    if loudest_dbfs(span) < SILENCE_DBFS:
        return CueResult("FAIL", "silence where the cue should be")
    tail = _margin(TAIL_MS, None if next_start is None else next_start - event.end_ms)
    best: Heard | None = None
    for lead_in, attempt in ATTEMPTS:
        lead = _margin(lead_in, None if prev_end is None else event.start_ms - prev_end)
        a = max(0.0, event.start_ms - lead)
        b = min(total_ms, event.end_ms + tail)
        window = tones.muted(pcm16k[round(a * RATE_16K / 1000):round(b * RATE_16K / 1000)], a, event)
        without: frozenset[str] = frozenset()
        for _ in range(MAX_SET_ASIDE + 1):
            heard = recogniser.hear(window, a, seed=seed * len(ATTEMPTS) + attempt, without=without)
            if not heard.words:
                heard = recogniser.hear(window, a, seed=seed * len(ATTEMPTS) + attempt, without=without,
                                        wide=True)
            if heard.words == expected or not heard.complete or _fits(heard, event, recogniser):
                break
            without |= {heard.words}  # a look-alike that does not fit the audio: set it aside
        if heard.words == expected and _on_time(heard, event) and heard.span_ms >= MIN_SPAN_SHARE * length:
            return CueResult("pass", recognised(heard.onset_ms - event.start_ms), heard.words, heard.onset_ms)
        best = _better(best, heard, expected)
    assert best is not None
    look_alike = best.complete and best.words != expected and _on_time(best, event) \
        and best.span_ms >= MIN_SPAN_SHARE * length
    return CueResult("FAIL", _why(best, event, expected), best.words, best.onset_ms, look_alike)


def loudest_dbfs(pcm: np.ndarray, frame_ms: int = SILENCE_FRAME_MS) -> float:
    """The level (dBFS) of the loudest `frame_ms` frame of int16 16 kHz `pcm` (RMS)."""
    n = frame_ms * RATE_16K // 1000
    frames = len(pcm) // n
    if frames == 0:
        return float("-inf")
    x = np.asarray(pcm[:frames * n], dtype=np.float64).reshape(frames, n) / 32768.0
    peak = float(np.sqrt((x * x).mean(axis=1)).max())
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def _fits(heard: Heard, event: Event, recogniser: Recogniser) -> bool:
    """Could the cue heard be what is in the slot: as long as its own clip, starting with the slot?"""
    return (heard.span_ms >= MIN_SPAN_SHARE * recogniser.shortest[heard.words]
            and heard.onset_ms is not None and heard.onset_ms - event.start_ms <= LOOK_ALIKE_ONSET_MS)


def _margin(wanted: int, gap: int | None) -> float:
    """`wanted` ms of context, or less when the neighbouring cue is closer (never under 50 ms)."""
    if gap is None:
        return wanted
    return max(MIN_MARGIN_MS, min(wanted, gap))


def _on_time(heard: Heard, event: Event) -> bool:
    return heard.onset_ms is not None and \
        -EARLY_TOLERANCE_MS <= heard.onset_ms - event.start_ms <= LATE_TOLERANCE_MS


def _better(best: Heard | None, heard: Heard, expected: str) -> Heard:
    """The more telling of two failed attempts: the right words (mistimed) over anything else."""
    if best is None:
        return heard
    return heard if heard.words == expected and best.words != expected else best


def _why(heard: Heard, event: Event, expected: str) -> str:
    if heard.words == expected and heard.onset_ms is not None:
        off = (heard.onset_ms - event.start_ms) / 1000
        if not _on_time(heard, event):
            return f"heard {abs(off):.2f} s {'late' if off > 0 else 'early'}"
        length = (event.end_ms - event.start_ms) / 1000
        return f"cut short: heard for {heard.span_ms / 1000:.2f} s of its {length:.2f} s"
    if heard.complete:
        return f"heard \"{heard.words}\" instead"
    if heard.words:
        return f"not recognised (got as far as \"{heard.words}\")"
    return "not recognised (nothing heard)"


def recognised(offset_ms: int) -> str:
    return f"recognised, {offset_ms:+d} ms"
