"""The built-in beds, generated from a fixed seed as exact loops: brown-noise, rain, drone."""

from __future__ import annotations

import zlib

import numpy as np

from voiceflex.audio.rate import RATE

# A loop of a whole number of seconds (and so of 100 ms loudness hops).  Each
# bed is built in the frequency domain, or from sines and bursts placed
# modulo the loop, so its last sample runs into its first one as any two
# neighbours do: the loop has no seam to hide.
LOOP_SECONDS = 60
LOOP = LOOP_SECONDS * RATE
PEAK = 0.5  # sample peak of the stored loop; the mix sets the level


def generate(name: str, salt: str = "") -> np.ndarray:
    """One loop of the built-in bed `name` (float32, LOOP samples, sample peak PEAK).

    A `salt` seeds another loop of the same kind (scripts/bed_wer.py: the
    listener's noise); beds as voiceflex mixes them have none.
    """
    rng = np.random.default_rng(zlib.crc32((name + salt).encode()))
    x = {"brown-noise": _brown, "rain": _rain, "drone": _drone}[name](rng)
    x = x - x.mean()
    return (x * (PEAK / np.abs(x).max())).astype(np.float32)


def _shaped_noise(rng: np.random.Generator, gain) -> np.ndarray:
    """Noise whose spectrum is `gain(f)`, periodic in LOOP (random phases on the loop's own grid)."""
    f = np.fft.rfftfreq(LOOP, 1.0 / RATE)
    spectrum = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) * gain(f)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, LOOP)


def _brown(rng: np.random.Generator) -> np.ndarray:
    # Power falling 6 dB an octave, from 30 Hz (below, it would only move the speaker cone).
    return _with_air(rng, _shaped_noise(rng, lambda f: 1.0 / np.maximum(f, 30.0) * _highpass(f, 30.0)))


def _hiss(rng: np.random.Generator) -> np.ndarray:
    """A soft hiss: pink noise from 300 Hz to about 6 kHz."""
    return _shaped_noise(rng, lambda f: _highpass(f, 300.0) / np.sqrt(np.maximum(f, 1.0))
                         / (1.0 + (f / 6000.0) ** 2))


def _rain(rng: np.random.Generator) -> np.ndarray:
    # A soft hiss (the patter of many far drops) ...
    hiss = _hiss(rng)
    hiss *= 1.0 + 0.25 * np.sin(2 * np.pi * 3 * np.arange(LOOP) / LOOP + rng.uniform(0, 2 * np.pi))
    # ... and soft near drops at random: short, damped, pitched clicks, each
    # wrapped around the loop's end so none is cut at the seam.
    x = hiss / np.sqrt(np.mean(hiss * hiss))
    t = np.arange(int(0.04 * RATE)) / RATE
    for _ in range(6 * LOOP_SECONDS):
        at = int(rng.integers(LOOP))
        freq = rng.uniform(1500.0, 4500.0)
        drop = np.sin(2 * np.pi * freq * t) * np.exp(-t / rng.uniform(0.004, 0.012))
        drop *= np.minimum(1.0, t / 0.001)  # a 1 ms attack: soft, no click
        where = (at + np.arange(len(t))) % LOOP
        x[where] += drop * rng.uniform(0.3, 1.2)
    return x


def _drone(rng: np.random.Generator) -> np.ndarray:
    # A low open D chord, each voice a pair of sines 0.2 Hz apart (slow
    # beating) swelling on its own slow cycle.  Every frequency is a whole
    # number of cycles per loop.
    n = np.arange(LOOP) / RATE
    x = np.zeros(LOOP)
    for base, weight in ((73.42, 1.0), (110.0, 0.8), (146.83, 0.6), (220.0, 0.35)):
        voice = np.zeros(LOOP)
        for detune in (-0.1, 0.1):
            freq = round((base + detune) * LOOP_SECONDS) / LOOP_SECONDS
            voice += np.sin(2 * np.pi * freq * n + rng.uniform(0, 2 * np.pi))
        swell = int(rng.integers(1, 5)) / LOOP_SECONDS
        x += weight * voice * (1.0 + 0.3 * np.sin(2 * np.pi * swell * n + rng.uniform(0, 2 * np.pi)))
    return _with_air(rng, x)


def _with_air(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """`x` over a faint hiss of air, 10 dB under it.

    A bed all below 300 Hz leaves the speech band of the quiet around each
    cue empty but for it, and a recogniser heard cues through the brown
    noise and the drone worse than through rain; with the air, as well
    (docs/beds.md, "Intelligibility").
    """
    air = _hiss(rng)
    return x + air * np.sqrt(np.mean(x * x) / np.mean(air * air)) * 10.0 ** (-10.0 / 20.0)


def _highpass(f: np.ndarray, corner: float) -> np.ndarray:
    """A second-order high-pass magnitude at `corner` Hz."""
    r = (f / corner) ** 2
    return r / np.sqrt(1.0 + r * r)
