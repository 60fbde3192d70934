"""Peak control for speech: shaping a clip so its true peak sits within a budget above its loudness.

espeak peaks 14-19 dB above its loudness and MP3 leaves ~13.7 dB: a soft clipper, searched until it fits,
loses least loudness of what was measured (docs/internals.md, "Peak control for speech").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from voiceflex.audio.loudness import (
    gated_loudness,
    hop_energies,
    k_filter_coefficients,
    to_db,
    true_peak,
)
from voiceflex.audio.rate import RATE

KNEE = 0.6  # the clipper is linear up to this fraction of its threshold
PLR_TOLERANCE_DB = 0.1  # how far under the budget the search may land
PLR_OVER_DB = 0.02  # and over it (the level plan checks the result exactly)


def soft_clip(x: np.ndarray, threshold: float, knee: float = KNEE) -> np.ndarray:
    """`x` with every |sample| above knee * threshold bent smoothly towards `threshold`.

    The curve is k + (t - k) * tanh((|x| - k) / (t - k)): continuous with
    slope 1 at the knee k, always below the threshold t.
    """
    x = np.asarray(x, dtype=np.float32)
    bend = knee * threshold
    span = threshold - bend
    out = x.copy()
    loud = np.flatnonzero(np.abs(x) > bend)
    if len(loud):
        a = np.abs(x[loud]).astype(np.float64)
        out[loud] = np.sign(x[loud]) * (bend + span * np.tanh((a - bend) / span))
    return out


def shape(x: np.ndarray, max_plr_db: float, loudness_db: float) -> tuple[np.ndarray, float]:
    """`x` soft-clipped so its true peak is at most `max_plr_db` above its loudness.

    `loudness_db` is x's exact (K-weighted) loudness.  Returns the result and
    its true peak (linear); `x` itself when it already fits.  The result is
    quieter than `x`: level it afterwards.
    """
    y, peak, _, _ = shape_threshold(x, max_plr_db, loudness_db)
    return y, peak


def shape_threshold(x: np.ndarray, max_plr_db: float,
                    loudness_db: float) -> tuple[np.ndarray, float, float | None, float]:
    """As `shape`, with the threshold the result was clipped at (dBFS; None: `x` as it was)
    and the search's estimate of the result's loudness (how close: levels.clips.ESTIMATED_LOSS_DB).

    `soft_clip(x, 10 ** (threshold / 20))` gives the result again, exactly,
    without the search.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = true_peak(x)
    if not len(x) or not np.isfinite(loudness_db) or to_db(peak) - loudness_db <= max_plr_db:
        return x, peak, None, loudness_db
    offset = loudness_db - _rough_loudness(x)  # exact minus estimated, for this voice
    # Clipping leaves the waveform short of band-limited: its true peak can be
    # 1.1 dB over its sample peak, beside samples 3 dB under it.  The search
    # looks only beside the top 1.5 dB (cheap, and right for most cues); the
    # result is then measured in full, and searched again if that missed.
    aim = max_plr_db
    for _ in range(3):
        y, estimate, threshold, level = _search(x, aim, loudness_db, offset)
        p = true_peak(y)
        missed = to_db(p) - to_db(estimate)
        if missed <= 0.01:
            break
        aim -= missed
    return y, p, threshold, level


def _search(x: np.ndarray, max_plr_db: float, loudness_db: float,
            offset: float) -> tuple[np.ndarray, float, float, float]:
    """The soft-clip threshold that meets the budget, by an estimate of the true peak.

    Returns the clipped signal, its estimated true peak, the threshold (dBFS),
    and its estimated loudness.
    """

    def excess(threshold_db: float) -> tuple[float, tuple[np.ndarray, float, float, float]]:
        y = soft_clip(x, 10.0 ** (threshold_db / 20.0))
        p = true_peak(y, floor=0.84 * float(np.abs(y).max()))
        level = _rough_loudness(y) + offset
        return to_db(p) - level - max_plr_db, (y, p, threshold_db, level)

    # f(t) = excess falls as the threshold t falls.  Bracket the root from the
    # naive threshold (loudness + budget), then regula falsi (Illinois).
    high_t = loudness_db + max_plr_db
    high_f, found = excess(high_t)
    if high_f <= 0:
        return found
    # On espeak cues the clipper loses ~0.5 dB of loudness per dB of
    # threshold, so the excess moves ~0.5 dB per dB: aim there.
    low_t = high_t - 2.0 * high_f - 0.05
    low_f, low = excess(low_t)
    while low_f > 0:  # not low enough yet
        high_t, high_f = low_t, low_f
        low_t -= 2.0 * low_f + 0.3
        low_f, low = excess(low_t)
    best, best_f = low, low_f
    side = 0  # Illinois: halve the stale end's value when the same end moves twice
    for _ in range(20):
        if best_f >= -PLR_TOLERANCE_DB:
            break
        t = low_t - low_f * (high_t - low_t) / (high_f - low_f)
        f, found = excess(t)
        if 0 < f <= PLR_OVER_DB:
            return found
        if f > 0:
            high_t, high_f = t, f
            if side == +1:
                low_f /= 2.0
            side = +1
        else:
            low_t, low_f = t, f
            best, best_f = found, f
            if side == -1:
                high_f /= 2.0
            side = -1
    return best


def _rough_loudness(x: np.ndarray) -> float:
    """Gated loudness of x through a short FIR shaped like the K-weighting: cheap, for searching."""
    taps = _k_like_taps()
    half = len(taps) // 2
    x = np.asarray(x, dtype=np.float32)
    y = x * taps[half]
    for k in range(1, half + 1):  # symmetric taps: two shifted adds each
        y[k:] += taps[half + k] * x[:-k]
        y[:-k] += taps[half + k] * x[k:]
    return gated_loudness(hop_energies(y))


@lru_cache(maxsize=1)
def _k_like_taps(count: int = 15) -> np.ndarray:
    """A linear-phase FIR whose gain follows |K(f)| from 60 Hz up (least squares)."""
    freqs = np.linspace(0.0, RATE / 2, 512)
    z = np.exp(-2j * np.pi * freqs / RATE)
    target = np.ones(len(freqs))
    for b, a in k_filter_coefficients(RATE):
        target *= np.abs((b[0] + z * (b[1] + z * b[2])) / (a[0] + z * (a[1] + z * a[2])))
    half = count // 2
    w = 2 * np.pi * freqs / RATE
    basis = np.column_stack([np.ones_like(w)] + [2 * np.cos(k * w) for k in range(1, half + 1)])
    weight = (freqs > 60.0).astype(float)[:, None]
    coef, *_ = np.linalg.lstsq(basis * weight, target * weight[:, 0], rcond=None)
    return np.concatenate([coef[:0:-1], coef]).astype(np.float32)
