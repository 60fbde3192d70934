"""The gain of a sound bed over the track: ducked under cues, faded in and out; a pure function of the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from voiceflex.audio.loudness import HOP
from voiceflex.audio.rate import ms_to_samples
from voiceflex.timeline import Timeline

# docs/beds.md, "Ducking": fully lowered from 150 ms before a cue until 300 ms after it.  The
# ramps lie outside that window, so the whole cue and its run-up sit under
# the full duck; they are raised-cosine curves in dB, without corners.
LEAD = ms_to_samples(150)
TRAIL = ms_to_samples(300)
DOWN = ms_to_samples(200)
UP = ms_to_samples(400)
FADE_IN = ms_to_samples(2000)
FADE_OUT = ms_to_samples(3000)
# Hop-level averages of the envelope (for the loudness plan) from this many
# points per 100 ms hop: the ramps are 200 ms or longer.
POINTS_PER_HOP = 21


@dataclass(frozen=True)
class Envelope:
    """Bed gain per sample over [0, total): `windows` fully ducked by `duck_db`, ramps and fades around."""

    total: int
    duck_db: float
    starts: np.ndarray  # int64, sorted; window i is [starts[i], ends[i])
    ends: np.ndarray

    def at(self, n: np.ndarray) -> np.ndarray:
        """The gain (linear, float64) at each sample position in `n`."""
        n = np.asarray(n, dtype=np.int64)
        depth = np.zeros(len(n))
        if len(self.starts):
            j = np.searchsorted(self.starts, n, side="right") - 1  # last window starting at or before n
            inside = (j >= 0) & (n < self.ends[np.maximum(j, 0)])
            after = np.where(j >= 0, n - self.ends[np.maximum(j, 0)], UP)
            k = np.minimum(j + 1, len(self.starts) - 1)
            before = np.where(j + 1 < len(self.starts), self.starts[k] - n, DOWN)
            depth = np.maximum(_rise(1.0 - after / UP), _rise(1.0 - before / DOWN))
            depth[inside] = 1.0
        gain = 10.0 ** (-self.duck_db * depth / 20.0)
        fade = np.minimum(_rise(n / FADE_IN), _rise((self.total - n) / FADE_OUT))
        return gain * fade

    @cached_property
    def _ramps(self) -> tuple[np.ndarray, np.ndarray]:
        """The gain k samples before a window (k = 0..DOWN) and k samples after one (0..UP-1), as `at` has it."""
        down = 10.0 ** (-self.duck_db * _rise(1.0 - np.arange(DOWN + 1) / DOWN) / 20.0)
        up = 10.0 ** (-self.duck_db * _rise(1.0 - np.arange(UP) / UP) / 20.0)
        return down, up

    def gain(self, a: int, b: int) -> np.ndarray:
        """The gain of samples [a, b), float32: `at` worked out only where it is not 1 or the full duck.

        The mixer asks for every chunk of the track, and most of a chunk is
        either untouched or fully lowered: only ramps and fades are computed.
        """
        g = np.ones(max(b - a, 0))
        low = 10.0 ** (-self.duck_db / 20.0)
        first = int(np.searchsorted(self.ends, a - UP, side="right"))
        last = int(np.searchsorted(self.starts, b + DOWN, side="left"))
        down, up = self._ramps
        for start, end in zip(self.starts[first:last].tolist(), self.ends[first:last].tolist(), strict=True):
            lo, hi = max(start, a), min(end, b)
            if lo < hi:
                g[lo - a:hi - a] = low
            lo, hi = max(start - DOWN, a), min(start, b)  # down[k]: k samples before the window
            if lo < hi:
                np.minimum(g[lo - a:hi - a], down[start - hi + 1:start - lo + 1][::-1], out=g[lo - a:hi - a])
            lo, hi = max(end, a), min(end + UP, b)  # up[k]: k samples after it
            if lo < hi:
                np.minimum(g[lo - a:hi - a], up[lo - end:hi - end], out=g[lo - a:hi - a])
        for lo, hi in ((max(a, 0), min(b, FADE_IN)), (max(a, self.total - FADE_OUT, FADE_IN), b)):
            if lo < hi:  # the fades (the two spans never overlap; a short track has both in each)
                n = np.arange(lo, hi)
                g[lo - a:hi - a] *= np.minimum(_rise(n / FADE_IN), _rise((self.total - n) / FADE_OUT))
        return g.astype(np.float32)

    def mean_square_per_hop(self, hop_count: int) -> np.ndarray:
        """The mean of gain squared over each 100 ms hop of the track (the loudness plan's unit)."""
        offsets = (np.arange(POINTS_PER_HOP) + 0.5) * HOP / POINTS_PER_HOP
        out = np.empty(hop_count)
        for first in range(0, hop_count, 2048):  # a block at a time: memory stays small for hours
            hops = np.arange(first, min(first + 2048, hop_count))
            points = (hops[:, None] * HOP + offsets[None, :]).astype(np.int64)
            g = self.at(np.minimum(points.ravel(), self.total - 1)).reshape(len(hops), POINTS_PER_HOP)
            out[first:first + len(hops)] = np.mean(g * g, axis=1)
        return out

    def most(self, a: int, b: int) -> float:
        """An upper bound of the gain over [a, b) (for peak bounds): sampled every 5 ms, plus a margin."""
        if b <= a:
            return 0.0
        step, block = ms_to_samples(5), ms_to_samples(5) * 4096
        most = float(self.at(np.array([b - 1]))[0])
        for first in range(a, b, block):  # a block at a time: the whole track may be asked for
            most = max(most, float(self.at(np.arange(first, min(first + block, b), step)).max()))
            if most >= 1.0:
                break
        return most * 1.01


def envelope(timeline: Timeline, duck_db: float, duck_tones: bool = False) -> Envelope:
    """The bed's envelope for `timeline`: lowered `duck_db` under every speech cue (and tone, if asked).

    Windows closer together than a ramp down and up are joined: the bed
    stays down instead of bobbing up for an instant.
    """
    total = ms_to_samples(timeline.duration_ms)
    spans = sorted((max(0, ms_to_samples(e.start_ms) - LEAD), min(total, ms_to_samples(e.end_ms) + TRAIL))
                   for e in timeline.events if e.kind == "speech" or (duck_tones and e.kind == "tone"))
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < UP + DOWN:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = np.array([s for s, _ in merged], dtype=np.int64)
    ends = np.array([e for _, e in merged], dtype=np.int64)
    return Envelope(total, float(duck_db), starts, ends)


def _rise(u: np.ndarray) -> np.ndarray:
    """A raised-cosine step: 0 for u <= 0, 1 for u >= 1, smooth between."""
    u = np.clip(u, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)
