"""The clips of a level plan: a cue at its level, and shaped to a peak budget on demand."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from voiceflex.audio.dynamics import shape_threshold, soft_clip
from voiceflex.audio.loudness import (
    BLOCK_HOPS, HOP, from_db, gated_loudness, hop_energies, integrated_loudness, k_weight, to_db, true_peak,
)
from voiceflex.audio.mixer import source_of
from voiceflex.audio.rate import RATE
from voiceflex.routine.model import ToneSpec

if TYPE_CHECKING:
    from voiceflex.audio.levels.meter import Meter, Weighed

# A near-silent clip is not blown up into noise.
MAX_LEVEL_GAIN_DB = 30.0
# No clip is shaped below this peak-to-loudness ratio, whatever the tones
# under it ask (espeak's waveform crest alone is ~10 dB); the final gain
# gives way instead.
MIN_PLR_DB = 9.0
# Up to this much loudness taken by clipping, a shaped cue is levelled back by
# the shaping search's estimate of its loudness.  Measured on 662 such
# shapings of 224 espeak cues: error mean 0.00 dB, 99% within 0.02, all
# within 0.15.  Deeper clipping makes the estimate drift (0.2-0.7 dB at 5-10 dB
# on synthetic voices), so those are measured.
ESTIMATED_LOSS_DB = 3.0


class Sound(Protocol):
    """A clip the plan takes: int16 or float32 `samples` at `rate` Hz (voice.Clip, Leveled, ...)."""

    samples: np.ndarray
    rate: int


@dataclass(frozen=True, eq=False)
class Leveled:
    """A clip at its place in the mix: int16 `samples` times `scale` (over 32768)."""

    samples: np.ndarray
    rate: int
    scale: float

    @property
    def ms(self) -> int:
        return round(len(self.samples) * 1000 / self.rate)

    def as_float(self) -> np.ndarray:
        return self.samples * np.float32(self.scale / 32768.0)


@dataclass(frozen=True)
class Version:
    """A clip at a level: the clip, its true peak, and its K-weighted energy where it lies."""

    clip: Leveled
    peak: float
    weighed: Weighed | None  # None when made for a mix measured already (streaming)
    shaped: bool = False  # False: the levelled clip itself
    threshold_db: float | None = None  # shaped: soft-clipped at this threshold (None: only rounded)


class Voice:
    """One cue: its clip levelled, and shaped to a peak budget on demand (the latest kept)."""

    def __init__(self, key: tuple, samples: np.ndarray, scale: float, target_lufs: float,
                 meter: Meter | None, known: tuple[float, Weighed | None] | None = None):
        self.key = key
        self.target = target_lufs
        self.meter = meter
        if known is None:
            weighed, k = meter.weigh(key, samples)
            loudness = clip_loudness(samples, scale, k)
        else:  # measured by an earlier render of the same routine (Memo)
            loudness, weighed = known
        self.loudness, self.unit = loudness, weighed
        self.leveled = Leveled(samples, RATE, scale * 32768.0 * level_gain(loudness, target_lufs))
        self.weighed = weighed.at(self.leveled.scale / 32768.0) if weighed is not None else None
        self._peak: float | None = None
        self._last: tuple[tuple[float, bool], Version] | None = None

    @property
    def peak(self) -> float:
        """The levelled clip's true peak: measured when first asked (the gain does not need it)."""
        if self._peak is None:
            self._peak = true_peak(self.leveled.as_float())
        return self._peak

    def within(self, max_plr_db: float, *, weigh: bool = True) -> Version:
        """This clip with true peak at most `max_plr_db` above its level.

        Without `weigh`, a shaped version comes without its energies for the
        meter (the streaming plan measured the mix before shaping).
        """
        if to_db(self.peak) - self.target <= max_plr_db:
            return Version(self.leveled, self.peak, self.weighed)
        key = (round(max_plr_db, 2), weigh)
        if self._last is None or self._last[0] != key:  # only the latest is kept: memory
            self._last = (key, self._shape(key[0], weigh))
        return self._last[1]

    def forget(self) -> None:
        """Let go of the shaped version (asked for again, it is made again)."""
        self._last = None

    def rebuild(self, shaped: bool, threshold_db: float | None, scale: float) -> Leveled:
        """The clip a shaping made (its Version's `shaped`, `threshold_db`), at `scale`: exactly."""
        if not shaped:
            return Leveled(self.leveled.samples, RATE, scale)
        x = self.leveled.as_float()
        y = x if threshold_db is None else soft_clip(x, 10.0 ** (threshold_db / 20.0))
        return Leveled(quantize(y)[0], RATE, scale)

    def _shape(self, max_plr_db: float, weigh: bool) -> Version:
        x = self.leveled.as_float()
        aim = max_plr_db
        for _ in range(3):
            y, peak_y, threshold, estimate = shape_threshold(x, aim, self.target)
            samples, scale = quantize(y)
            weighed = None
            if weigh:
                weighed, k = self.meter.weigh(self.key, samples)  # measured exactly
                loudness = clip_loudness(samples, scale / 32768.0, k)
            elif self.target - estimate <= ESTIMATED_LOSS_DB:
                # Streaming (the mix was measured before shaping): the clip is
                # levelled back by the search's own estimate of its loudness
                # instead of being K-weighted again, which took a third of the
                # shaping's time.  Its peak follows the level applied, so the
                # peak budget holds all the same.
                loudness = estimate
            else:
                loudness = clip_loudness(samples, scale / 32768.0, k_weight(samples))
            level = level_gain(loudness, self.target)
            clip = Leveled(samples, RATE, scale * level)
            # the search measured y's true peak; rounding to int16 moves it < 1e-4
            peak = peak_y * level * 1.0001
            over = to_db(peak) - self.target - max_plr_db
            if over <= 0.05:
                break
            aim -= over + 0.02  # the search's loudness estimate was off by about this
        return Version(clip, peak, weighed.at(clip.scale / 32768.0) if weighed else None,
                        shaped=True, threshold_db=threshold)


def int16_of(clip: Sound) -> tuple[np.ndarray, float]:
    """A clip's samples as int16 and the factor to [-1, 1] (float clips are quantised)."""
    samples, scale = source_of(clip)
    if samples.dtype != np.int16:
        samples, base = quantize(samples * scale)
        return samples, base / 32768.0
    return samples, float(scale)


def clip_loudness(samples: np.ndarray, scale: float, k: np.ndarray) -> float:
    """A clip's loudness (LUFS) from its K-weighted samples; shorter than a block: looped."""
    if 0 < len(samples) < BLOCK_HOPS * HOP:
        return integrated_loudness(np.resize(samples.astype(np.float32) * np.float32(scale),
                                             BLOCK_HOPS * HOP))
    return gated_loudness(hop_energies(k[: len(samples)]) * scale * scale)


def level_gain(loudness: float, target: float) -> float:
    if not np.isfinite(loudness):
        return 1.0
    return from_db(float(np.clip(target - loudness, -MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB)))


def quantize(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Float samples as int16 filling the range, and the scale (over 32768) that restores them."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0.0:
        return np.zeros(len(x), np.int16), 1.0
    q = np.rint(np.asarray(x, dtype=np.float64) * (32767.0 / peak)).astype(np.int16)
    return q, peak * 32768.0 / 32767.0


def capped(spec: ToneSpec, max_db: float) -> ToneSpec:
    return spec if spec.db <= max_db else replace(spec, db=max_db)
