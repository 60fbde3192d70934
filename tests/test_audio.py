"""Tones and the BS.1770 meter, and the signals and timelines the audio tests share (no ffmpeg)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from helpers.fakes import FakeClip

from voiceflex.audio import dynamics, loudness, mixer, tones
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.errors import Location
from voiceflex.routine.model import DEFAULT_TONES, ToneSpec
from voiceflex.timeline import Chapter, Event, Timeline

HERE = Location("test.yaml", 1, 1)


def speechlike(seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A voiced, syllabic, peaky int16 signal: harmonics of a wobbling pitch, 4 syllables/s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(rng.uniform(0.2, 1.0) / k * np.cos(k * phase) for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    syllables *= rng.uniform(0.3, 1.0, size=n // RATE + 1).repeat(RATE)[:n]  # stressed and not
    x = voiced * syllables + 0.02 * rng.standard_normal(n) * syllables
    x *= level / np.abs(x).max()
    return np.round(x * 32767).astype(np.int16)


def speech(start_ms: int, clip: FakeClip, text: str) -> Event:
    end = start_ms + round(len(clip.samples) * 1000 / RATE)
    return Event("speech", start_ms, end, 0, HERE, text=text)


def tone(name: str, start_ms: int, end_ms: int | None = None) -> Event:
    spec = DEFAULT_TONES[name]
    return Event("tone", start_ms, end_ms if end_ms is not None else start_ms + spec.ms, 0, HERE,
                 name=name, freq_hz=spec.freq)


def timeline(events: list[Event], duration_ms: int) -> Timeline:
    events = sorted(events, key=lambda e: e.start_ms)
    return Timeline("Test", duration_ms, (Chapter("Test", 0, duration_ms),), tuple(events))


def dominant_hz(x: np.ndarray) -> float:
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window, 8 * len(x)))
    return float(np.fft.rfftfreq(8 * len(x), 1 / RATE)[spectrum.argmax()])


def cues_over_tones(tone_name: str, *, seed: int, first_seed: int, count: int, longest_s: float,
                    repeats: int, gap_ms: int, tone_ms: int, step_ms: int):
    """`count` peaky cues spoken `repeats` times over, each followed by a tone: the timeline and clips."""
    rng = np.random.default_rng(seed)
    clips = {f"cue {i}": FakeClip(speechlike(rng.uniform(0.6, longest_s), seed=first_seed + i, level=0.9))
             for i in range(count)}
    events, t = [], 0
    for text, clip in list(clips.items()) * repeats:
        events.append(speech(t, clip, text))
        t = events[-1].end_ms + gap_ms
        events.append(tone(tone_name, t, t + tone_ms))
        t += step_ms
    return timeline(events, t), clips


def small_timeline(seed: int = 1):
    rng = np.random.default_rng(seed)
    clips = {f"cue {i}": FakeClip(speechlike(rng.uniform(0.3, 1.5), seed=i)) for i in range(4)}
    events, t = [], 0
    for i, (text, clip) in enumerate(clips.items()):
        events.append(speech(t + 7, clip, text))
        t = events[-1].end_ms + 300
        events.append(tone(["start", "tick", "switch", "end"][i], t))
        t += 400
    events.append(tone("inhale", 500, 2500))  # under speech
    events.append(tone("done", t))
    return timeline(events, t + 1000 + 3), clips


def naive_mix(tl: Timeline, clips, tone_specs, gain_db: float = 0.0) -> np.ndarray:
    track = np.zeros(mixer.total_samples(tl), np.float64)
    for e in tl.events:
        start = ms_to_samples(e.start_ms)
        if e.kind == "speech":
            data = clips[e.text].samples / 32768.0
        else:
            data = tones.synth(tone_specs[e.name], ms_to_samples(e.end_ms) - start)
        end = min(start + len(data), len(track))
        if end > start:
            track[start:end] += data[: end - start]
    return track * 10 ** (gain_db / 20)


# --- tones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["start", "end", "switch", "tick", "done"])
def test_fixed_tone_pitch_level_and_fades(name):
    spec = DEFAULT_TONES[name]
    n = ms_to_samples(spec.ms)
    x = tones.synth(spec, n)
    assert x.dtype == np.float32 and len(x) == n
    assert dominant_hz(x) == pytest.approx(spec.freq, rel=0.01)
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(spec.db, abs=0.2)
    # Starts and ends at silence through smooth ramps: the steps between
    # samples at the edges are far smaller than those of the tone itself.
    assert x[0] == 0.0 and abs(x[-1]) < 1e-3 * np.abs(x).max()
    steps = np.abs(np.diff(x))
    edge = ms_to_samples(2)
    assert steps[:edge].max() < 0.3 * steps.max() and steps[-edge:].max() < 0.3 * steps.max()
    attack = ms_to_samples(tones.BEEP_ATTACK_MS)
    envelope = np.maximum.accumulate(np.abs(x[:attack]))
    assert envelope[attack // 4] < 0.5 * np.abs(x).max()  # rises gradually


@pytest.mark.parametrize("name,rising", [("inhale", True), ("exhale", False)])
def test_glide_spans_its_event_and_moves_in_pitch(name, rising):
    spec = DEFAULT_TONES[name]
    n = ms_to_samples(4000)
    x = tones.synth(spec, n)
    assert len(x) == n
    window = ms_to_samples(300)
    first = dominant_hz(x[int(0.35 * n) - window:int(0.35 * n)])
    last = dominant_hz(x[int(0.65 * n):int(0.65 * n) + window])
    assert (last > first) == rising
    assert min(first, last) > min(spec.freq, spec.freq_end) * 0.95
    assert max(first, last) < max(spec.freq, spec.freq_end) * 1.05
    # long, gentle fades: the first and last tenth are much quieter than the middle
    rms = lambda a: float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))  # noqa: E731
    middle = rms(x[int(0.45 * n):int(0.55 * n)])
    assert rms(x[: n // 10]) < 0.5 * middle and rms(x[-n // 10:]) < 0.5 * middle


def test_tones_are_cached_and_read_only():
    spec = DEFAULT_TONES["start"]
    a = tones.synth(spec, 1000)
    assert tones.synth(spec, 1000) is a
    with pytest.raises(ValueError):
        a[0] = 1.0


def test_built_in_tones_have_distinct_pitches_under_the_voice():
    fixed = [s.freq for name, s in DEFAULT_TONES.items() if not s.is_glide]
    assert len(set(fixed)) == len(fixed)
    assert all(s.db < -6 for s in DEFAULT_TONES.values())


# --- the BS.1770 meter ---------------------------------------------------------------------------


def test_k_filter_is_the_standards_at_48khz():
    (pre_b, pre_a), (rlb_b, rlb_a) = loudness.k_filter_coefficients(48000)
    np.testing.assert_allclose(pre_b, [1.53512485958697, -2.69169618940638, 1.19839281085285],
                               atol=1e-9)
    np.testing.assert_allclose(pre_a, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(rlb_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(rlb_a, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


@pytest.mark.parametrize("kind", ["noise", "speech", "sparse speech", "sine"])
def test_meter_agrees_with_pyloudnorm(kind):
    rng = np.random.default_rng(3)
    if kind == "noise":
        x = 0.1 * rng.standard_normal(RATE * 5)
    elif kind == "sine":
        x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE * 3) / RATE)
    else:
        x = speechlike(6, seed=5) / 32768.0
        if kind == "sparse speech":
            x = np.concatenate([np.zeros(RATE), x[: RATE * 2], np.zeros(RATE * 3), x[RATE * 3:]])
    reference = pyloudnorm.Meter(RATE, filter_class="DeMan").integrated_loudness(x)
    assert loudness.integrated_loudness(x) == pytest.approx(reference, abs=0.01)


def test_full_scale_1khz_sine_reads_minus_3_lufs():
    x = np.sin(2 * np.pi * 997 * np.arange(RATE * 5) / RATE)
    assert loudness.integrated_loudness(x) == pytest.approx(-3.01, abs=0.1)


def test_gating_ignores_silence_and_reports_it_as_minus_infinity():
    x = speechlike(3, seed=2) / 32768.0
    short = np.concatenate([np.zeros(RATE), x, np.zeros(RATE)])
    long = np.concatenate([np.zeros(RATE * 9), x, np.zeros(RATE * 30)])  # same hop alignment
    assert loudness.integrated_loudness(long) == pytest.approx(
        loudness.integrated_loudness(short), abs=1e-6)
    assert loudness.integrated_loudness(np.zeros(RATE)) == float("-inf")


def test_true_peak_finds_peaks_between_samples():
    n = np.arange(RATE)
    x = np.sin(2 * np.pi * n / 4 + np.pi / 4)  # a quarter-rate sine sampled at +-0.707
    assert np.abs(x).max() == pytest.approx(0.7071, abs=1e-3)
    assert loudness.true_peak(x) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("budget", [None, 12.0, 10.0])
def test_true_peak_matches_16x_resampling_even_after_clipping(budget):
    scipy_signal = pytest.importorskip("scipy.signal")
    x = speechlike(2.5, seed=11) / 32768.0
    x = (x * 10 ** ((-16 - loudness.integrated_loudness(x)) / 20)).astype(np.float32)
    y = x if budget is None else dynamics.shape(x, budget, -16.0)[0]
    reference = np.abs(scipy_signal.resample_poly(y.astype(np.float64), 16, 1)).max()
    assert loudness.to_db(loudness.true_peak(y)) == pytest.approx(loudness.to_db(reference),
                                                                   abs=0.05)
    if budget is not None:
        assert dynamics.shape(x, budget, -16.0)[1] == pytest.approx(reference, rel=0.01)


def test_glide_specs_are_accepted_as_overrides():
    spec = ToneSpec(200.0, 3000, freq_end=400.0, db=-20.0)
    x = tones.synth(spec, ms_to_samples(3000))
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-20.0, abs=0.3)
