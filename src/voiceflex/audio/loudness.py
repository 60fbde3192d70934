"""Loudness (ITU-R BS.1770-4) and true peak of mono float samples at 22050 Hz.

Our own BS.1770-4, exact: it measures a mix from its sounds without rendering it, and costs no
scipy import or extra ffmpeg pass (docs/internals.md, "Loudness and true peak").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from voiceflex.audio.rate import RATE, ms_to_samples

# BS.1770 framing: 100 ms hops (exactly 2205 samples at 22050 Hz), 4 per block.
HOP = RATE // 10
BLOCK_HOPS = 4
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0

# K-filter ring-out kept after each sound: the filter's impulse response
# holds 1e-11 of its energy (amplitude 5e-7) beyond 50 ms.
K_TAIL = ms_to_samples(50)

TP_OVERSAMPLE = 4
TP_HALF_TAPS = 8  # interpolation taps each side of a point (16 per phase)


# --- BS.1770 loudness -------------------------------------------------------


def k_filter_coefficients(rate: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The BS.1770 pre-filter and RLB filter as (b, a) biquads for `rate` (libebur128's design)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    pre_b = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
                      (vh - vb * k / q + k * k) / a0])
    pre_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    rlb_b = np.array([1.0, -2.0, 1.0])
    rlb_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return (pre_b, pre_a), (rlb_b, rlb_a)


@lru_cache(maxsize=24)
def _k_response(n: int) -> np.ndarray:
    """The K-weighting frequency response on the rfft grid of length n (complex64)."""
    z = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)
    response = np.ones(n // 2 + 1, dtype=complex)
    for b, a in k_filter_coefficients(RATE):
        response *= (b[0] + z * (b[1] + z * b[2])) / (a[0] + z * (a[1] + z * a[2]))
    response = response.astype(np.complex64)
    response.flags.writeable = False
    return response


def _fft_len(n: int) -> int:
    """The least length >= n of the form 2^a * (1, 3, 5, 7 or 9): fast FFTs, few sizes."""
    best = 1 << max(n - 1, 1).bit_length()
    for odd in (3, 5, 7, 9):
        m = odd
        while m < n:
            m *= 2
        best = min(best, m)
    return best


def k_weight(x: np.ndarray, tail: int = K_TAIL) -> np.ndarray:
    """`x` K-weighted, float32, with `tail` samples of filter ring-out appended.

    Single precision throughout (numpy's FFT keeps float32 as float32): its
    rounding, ~1e-7 of full scale, is ~140 dB under any level that matters.
    """
    out_len = len(x) + tail
    n = _fft_len(out_len)
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float32), n)
    spectrum *= _k_response(n)
    return np.fft.irfft(spectrum, n)[:out_len].astype(np.float32, copy=False)


def hop_energies(k_weighted: np.ndarray) -> np.ndarray:
    """Sum of squares of each 100 ms hop (the last one may be partial), float64."""
    full = len(k_weighted) // HOP
    body = k_weighted[: full * HOP].reshape(full, HOP)
    energies = np.einsum("ij,ij->i", body, body).astype(np.float64)
    rest = k_weighted[full * HOP:]
    if len(rest):
        energies = np.append(energies, float(np.dot(rest, rest)))
    return energies


def gated_loudness(energies: np.ndarray) -> float:
    """Integrated loudness (LUFS) from per-hop energies of a K-weighted signal: BS.1770-4 gating."""
    e = np.asarray(energies, dtype=np.float64)
    if len(e) < BLOCK_HOPS:
        e = np.concatenate([e, np.zeros(BLOCK_HOPS - len(e))])
    blocks = sum(e[i: len(e) - BLOCK_HOPS + 1 + i] for i in range(BLOCK_HOPS)) / (BLOCK_HOPS * HOP)
    # A silent block measured from its sounds' energies and cross terms
    # (audio/levels) can come out a rounding error under zero: it is silence.
    np.maximum(blocks, 0.0, out=blocks)
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10.0 * np.log10(blocks)
    kept = levels > ABSOLUTE_GATE_LUFS
    if not kept.any():
        return float("-inf")
    relative_gate = -0.691 + 10.0 * np.log10(blocks[kept].mean()) + RELATIVE_GATE_LU
    kept &= levels > relative_gate
    return float(-0.691 + 10.0 * np.log10(blocks[kept].mean()))


def integrated_loudness(x: np.ndarray) -> float:
    """Integrated loudness of mono float samples at 22050 Hz, in LUFS (BS.1770-4)."""
    return gated_loudness(hop_energies(k_weight(x, tail=0)))


# --- true peak --------------------------------------------------------------


@lru_cache(maxsize=1)
def _tp_taps() -> np.ndarray:
    """Kaiser-windowed sinc interpolators for the points 1/4, 2/4, 3/4 between samples."""
    offsets = np.arange(-TP_HALF_TAPS + 1, TP_HALF_TAPS + 1)  # taps x[n-7] .. x[n+8]
    columns = []
    for phase in range(1, TP_OVERSAMPLE):
        distance = phase / TP_OVERSAMPLE - offsets
        window = np.i0(6.0 * np.sqrt(np.clip(1.0 - (distance / TP_HALF_TAPS) ** 2, 0.0, 1.0)))
        taps = np.sinc(distance) * window
        columns.append(taps / taps.sum())
    return np.array(columns, dtype=np.float32).T  # (16, 3)


def true_peak_envelope(x: np.ndarray, floor: float | None = None) -> np.ndarray:
    """For each sample n, the largest |value| of the 4x oversampled signal in [n, n+1).

    Only the intervals next to a sample of at least `floor` (default: 65% of
    the sample peak) are interpolated; elsewhere the envelope is |x|.  Even
    soft-clipped speech, no longer band-limited, peaks between samples at
    most ~1.1 dB over its sample peak, beside samples within 3 dB of it
    (measured on 180 clipped espeak cues against the full computation, and
    against 16x resampling in tests/test_audio.py): 3.7 dB leaves room.
    """
    x = np.asarray(x, dtype=np.float32)
    magnitude = np.abs(x)
    if len(x):
        candidates, between = _between(x, magnitude, floor)
        magnitude[candidates] = np.maximum(magnitude[candidates], between)
    return magnitude


def true_peak(x: np.ndarray, floor: float | None = None) -> float:
    """True peak (linear, 1.0 = 0 dBTP) by 4x oversampling, as BS.1770-4 Annex 2."""
    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        return 0.0
    magnitude = np.abs(x)
    _, between = _between(x, magnitude, floor)
    return float(max(magnitude.max(), between.max() if len(between) else 0.0))


def _between(x: np.ndarray, magnitude: np.ndarray, floor: float | None):
    """The samples next to loud intervals, and the interval peaks (1/4, 2/4, 3/4 of the way)."""
    if floor is None:
        floor = 0.65 * float(magnitude.max())
    loud = magnitude >= floor
    loud[:-1] |= loud[1:]  # the interval [n, n+1) is loud if either end is
    candidates = np.flatnonzero(loud)
    if not len(candidates):
        return candidates, np.zeros(0, np.float32)
    # Row i of the window view is x[i : i + 16]: the taps for the interval
    # [n, n+1) start at row n - 7 (n + 1 once padded at both ends).
    if candidates[0] < TP_HALF_TAPS or candidates[-1] >= len(x) - TP_HALF_TAPS:
        x = np.concatenate([np.zeros(TP_HALF_TAPS, np.float32), x,
                            np.zeros(TP_HALF_TAPS, np.float32)])
        rows = candidates + 1
    else:
        rows = candidates - (TP_HALF_TAPS - 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, 2 * TP_HALF_TAPS)
    between = np.abs(windows[rows] @ _tp_taps())
    return candidates, np.maximum(np.maximum(between[:, 0], between[:, 1]), between[:, 2])


def to_db(value: float) -> float:
    return float(20.0 * np.log10(value)) if value > 0 else float("-inf")


def from_db(db: float) -> float:
    return float(10.0 ** (db / 20.0))
