"""Finding tones in audio: a steady pitch at its planned start, a breathing glide rising or falling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.timeline import Event

# ---- steady tones --------------------------------------------------------------------
# The level at the tone's pitch, measured over the tone's span (up to a
# second) through a Hann window, against the median level at pitches 2 to 5
# semitones either side.  A pure tone stands tens of dB above its
# neighbours; silence, speech or another pitch do not.  20 dB is far from
# both: in renders and 32 kbit/s MP3s of six routines every tone measured
# over 60 dB (the 40 ms ticks the least), while white noise, whose level at
# any one pitch varies at random, reached 12.4 dB in 600 trials.
MIN_CONTRAST_DB = 20.0
# A tone quieter than this is not "present", whatever its contrast (an
# MP3's near-silence can have a faint, narrow peak).
MIN_LEVEL_DBFS = -60.0
MAX_ANALYSIS_MS = 1000
NEIGHBOUR_SEMITONES = (-5, -4, -3, -2, 2, 3, 4, 5)
# A neighbour within a semitone of another tone sounding in the same window
# would measure that tone, not the background.
CLASH_SEMITONES = 1.0

# ---- glides --------------------------------------------------------------------------
# Short-time spectra (93 ms frames, half overlapping) inside the pitch band
# of the glide; frames that overlap planned speech are skipped, since the
# breathing cues are spoken over the start of their glide.
GLIDE_FRAME = 2048
GLIDE_HOP = 1024
GLIDE_BAND_MARGIN = 1.25  # band: lowest pitch / 1.25 .. highest pitch * 1.25
SPEECH_MARGIN_MS = 50
MIN_PEAK_PROMINENCE_DB = 10.0  # a frame's peak over the band's median power
MIN_GLIDE_FRAMES = 3
MIN_PEAKED_SHARE = 0.5  # of the usable frames, that show a clear peak
# The fitted sweep must cover at least half the planned interval, in the
# planned direction: a steady tone, noise or a reversed glide do not.
MIN_SWEEP_SHARE = 0.5


@dataclass(frozen=True)
class ToneResult:
    """The verdict on one tone event, why, and what was measured."""

    verdict: str  # "pass", "FAIL" or "unchecked"
    reason: str
    level_db: float | None = None  # steady tones: dBFS at the pitch
    contrast_db: float | None = None  # steady tones: dB over the neighbouring pitches
    measured_hz: tuple[float, float] | None = None  # glides: fitted pitch at start and end


def check_tones(events: Sequence[Event], pcm: np.ndarray) -> list[ToneResult]:
    """A verdict for each tone event of `events`, in order; `pcm` is the track (int16 at RATE)."""
    tones = [e for e in events if e.kind == "tone"]
    speech = [(e.start_ms, e.end_ms) for e in events if e.kind == "speech"]
    total = len(pcm)
    results = []
    for event in tones:
        if ms_to_samples(event.start_ms) >= total:
            results.append(ToneResult("FAIL", "the audio ends before this tone"))
        elif isinstance(event.freq_hz, tuple):
            results.append(check_glide(event, pcm, speech))
        else:
            others = [float(o.freq_hz) for o in tones if o is not event and not isinstance(o.freq_hz, tuple)
                      and o.start_ms < event.end_ms and event.start_ms < o.end_ms]
            results.append(check_steady(event, pcm, others))
    return results


def check_steady(event: Event, pcm: np.ndarray, other_hz: Sequence[float] = ()) -> ToneResult:
    """Is `event`'s pitch sounding from its planned start? `other_hz`: tones overlapping it."""
    freq = float(event.freq_hz)
    a = ms_to_samples(event.start_ms)
    b = ms_to_samples(min(event.end_ms, event.start_ms + MAX_ANALYSIS_MS))
    x = _float(pcm[a:b])
    if freq >= RATE / 2:
        return ToneResult("unchecked", f"{freq:g} Hz is above what {RATE} Hz audio carries")
    neighbours = [freq * 2 ** (k / 12) for k in NEIGHBOUR_SEMITONES]
    neighbours = [f for f in neighbours if f < RATE / 2
                  and all(abs(12 * np.log2(f / o)) > CLASH_SEMITONES for o in other_hz)]
    # Hann's main lobe is 2 bins either side: the nearest neighbour must lie outside it.
    resolution = 2.0 * RATE / max(len(x), 1)
    if len(neighbours) < 2 or min(abs(f - freq) for f in neighbours) < 1.5 * resolution:
        return ToneResult("unchecked", "too short, or too close to another tone, to measure")
    level = amplitude_db(x, freq)
    floor = float(np.median([amplitude_db(x, f) for f in neighbours]))
    contrast = level - floor
    if level < MIN_LEVEL_DBFS:
        return ToneResult("FAIL", f"missing: {freq:g} Hz at {level:.0f} dBFS", level, contrast)
    if contrast < MIN_CONTRAST_DB:
        return ToneResult("FAIL", f"missing: {freq:g} Hz only {contrast:.0f} dB over nearby pitches",
                          level, contrast)
    return ToneResult("pass", f"{freq:g} Hz at {level:.0f} dBFS", level, contrast)


def amplitude_db(x: np.ndarray, freq: float, rate: int = RATE) -> float:
    """The amplitude (dBFS) of a sine at `freq` in float samples `x`, Hann-windowed.

    A single-bin DFT at exactly `freq` (a Goertzel filter), scaled so that a
    full-scale sine of that pitch measures 0 dBFS.
    """
    n = len(x)
    if n == 0:
        return float("-inf")
    window = np.hanning(n + 2)[1:-1]  # no zero end points: every sample counts
    phase = np.exp(-2j * np.pi * freq / rate * np.arange(n))
    value = abs(np.dot(x * window, phase)) / (window.sum() / 2)
    return float(20 * np.log10(value)) if value > 0 else float("-inf")


def check_glide(event: Event, pcm: np.ndarray, speech: Sequence[tuple[int, int]]) -> ToneResult:
    """Does the pitch in `event`'s span glide the planned way (up for inhale, down for exhale)?"""
    f0, f1 = (float(f) for f in event.freq_hz)
    a, b = ms_to_samples(event.start_ms), ms_to_samples(event.end_ms)
    x = _float(pcm[a:b])
    times, freqs, usable = glide_track(x, f0, f1, event.start_ms, speech)
    if usable < MIN_GLIDE_FRAMES:
        return ToneResult("unchecked", "too short, or covered by speech")
    if len(freqs) < max(MIN_GLIDE_FRAMES, MIN_PEAKED_SHARE * usable):
        return ToneResult("FAIL", f"missing: no clear pitch between {min(f0, f1):g} and {max(f0, f1):g} Hz")
    # log-pitch against time, a straight line for the planned exponential sweep
    slope, intercept = np.polyfit(times, np.log2(freqs), 1)
    length = (event.end_ms - event.start_ms) / 1000
    start_hz, end_hz = 2 ** intercept, 2 ** (intercept + slope * length)
    planned = np.log2(f1 / f0)
    swept = np.log2(end_hz / start_hz)
    direction = "rise" if planned > 0 else "fall"
    measured = (round(float(start_hz), 1), round(float(end_hz), 1))
    if planned == 0 or swept / planned < MIN_SWEEP_SHARE:
        return ToneResult("FAIL", f"should {direction} {f0:g}->{f1:g} Hz; heard {start_hz:.0f}->{end_hz:.0f} Hz",
                          measured_hz=measured)
    return ToneResult("pass", f"{direction}s {start_hz:.0f}->{end_hz:.0f} Hz", measured_hz=measured)


def glide_track(x: np.ndarray, f0: float, f1: float, start_ms: int,
                speech: Sequence[tuple[int, int]] = ()) -> tuple[np.ndarray, np.ndarray, int]:
    """The peak pitch of each speech-free frame of `x` where one stands out in the glide's band.

    Returns (frame centres in seconds from the start of `x`, their pitches in
    Hz, the number of speech-free frames looked at).
    """
    lo = min(f0, f1) / GLIDE_BAND_MARGIN
    hi = min(max(f0, f1) * GLIDE_BAND_MARGIN, RATE / 2)
    bins = np.fft.rfftfreq(GLIDE_FRAME, 1 / RATE)
    band = np.flatnonzero((bins >= lo) & (bins <= hi))
    window = np.hanning(GLIDE_FRAME)
    times, freqs, usable = [], [], 0
    for s in range(0, len(x) - GLIDE_FRAME + 1, GLIDE_HOP):
        t0 = start_ms + s * 1000 / RATE
        t1 = t0 + GLIDE_FRAME * 1000 / RATE
        if any(a - SPEECH_MARGIN_MS < t1 and t0 < b + SPEECH_MARGIN_MS for a, b in speech):
            continue
        usable += 1
        power = np.abs(np.fft.rfft(x[s:s + GLIDE_FRAME] * window)) ** 2
        p = power[band]
        k = int(np.argmax(p))
        median = float(np.median(p))
        if p[k] <= 0 or 10 * np.log10(p[k] / max(median, 1e-20)) < MIN_PEAK_PROMINENCE_DB:
            continue
        if 0 < k < len(p) - 1:  # parabolic interpolation on log power: sub-bin accuracy
            l, c, r = np.log(p[k - 1:k + 2] + 1e-30)
            shift = 0.5 * (l - r) / (l - 2 * c + r) if (l - 2 * c + r) != 0 else 0.0
        else:
            shift = 0.0
        freqs.append(bins[band[k]] + shift * RATE / GLIDE_FRAME)
        times.append((s + GLIDE_FRAME / 2) / RATE)
    return np.array(times), np.array(freqs), usable


def _float(pcm: np.ndarray) -> np.ndarray:
    return np.asarray(pcm, dtype=np.float64) / 32768.0
