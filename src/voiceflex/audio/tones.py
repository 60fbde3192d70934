"""Timing tones (docs/routine-format.md, `tones`): soft beeps and breathing glides, synthesized with numpy."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.routine.model import ToneSpec

# A little second harmonic rounds off a bare sine without making it buzzy.
HARMONIC_2 = 0.18

# Fixed-pitch tones: a quick attack so the beep is on time, a longer release so
# it ends softly.  Raised-cosine ramps: their slope is zero at both ends, so the
# tone starts and stops without a click.
BEEP_ATTACK_MS = 6
BEEP_RELEASE_MS = 40

# Glides span a whole breathing phase (seconds): they swell in and fade out
# over a large part of it, so they guide the breath without a hard edge.
GLIDE_FADE_FRACTION = 0.3
GLIDE_FADE_MAX_MS = 1500


def peak_amplitude(spec: ToneSpec) -> float:
    """The tone's peak level as a linear amplitude (1.0 = full scale)."""
    return float(10.0 ** (spec.db / 20.0))


def synth(spec: ToneSpec, n_samples: int) -> np.ndarray:
    """The tone `spec` lasting `n_samples`, float32 in [-1, 1], peak at `spec.db` dBFS.

    Fixed-pitch tones and glides both fill exactly `n_samples` (the event's
    length on the timeline).  The array is cached and read-only: copy it before
    changing it.
    """
    return _synth(spec, int(n_samples))


@lru_cache(maxsize=256)
def _synth(spec: ToneSpec, n: int) -> np.ndarray:
    if n <= 0:
        out = np.zeros(0, np.float32)
        out.flags.writeable = False
        return out
    t = np.arange(n, dtype=np.float64)
    if spec.is_glide:
        # An exponential sweep: equal steps in pitch per unit of time, which the
        # ear hears as an even rise (inhale) or fall (exhale).
        ratio = float(spec.freq_end) / spec.freq
        freq = spec.freq * ratio ** (t / max(n - 1, 1))
        phase = 2.0 * np.pi * np.cumsum(freq) / RATE
        fade_in = fade_out = min(int(n * GLIDE_FADE_FRACTION), ms_to_samples(GLIDE_FADE_MAX_MS))
    else:
        phase = 2.0 * np.pi * spec.freq * t / RATE
        fade_in = min(ms_to_samples(BEEP_ATTACK_MS), n // 4)
        fade_out = min(ms_to_samples(BEEP_RELEASE_MS), n // 2)
    wave = np.sin(phase) + HARMONIC_2 * np.sin(2.0 * phase)
    wave /= np.max(np.abs(wave))  # peak exactly at full scale before the level
    wave *= _envelope(n, fade_in, fade_out)
    wave *= peak_amplitude(spec)
    out = wave.astype(np.float32)
    out.flags.writeable = False
    return out


def _envelope(n: int, fade_in: int, fade_out: int) -> np.ndarray:
    env = np.ones(n)
    if fade_in > 0:
        env[:fade_in] = _rise(fade_in)
    if fade_out > 0:
        env[n - fade_out:] *= _rise(fade_out)[::-1]
    return env


def _rise(k: int) -> np.ndarray:
    """A raised-cosine ramp from 0 to just under 1 over k samples."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
