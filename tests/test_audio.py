"""Tones, the streaming mixer, the BS.1770 meter, peak shaping and the level plan (no ffmpeg)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import os
import threading
import warnings

import numpy as np
import pyloudnorm
import pytest

from helpers.fakes import FakeClip

from voiceflex.audio import dynamics, levels, loudness, mixer, tones
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


# --- mixer -----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("chunk", [1, 7, 1000, 2205, mixer.CHUNK_SAMPLES, 10**7])
def test_chunks_add_up_to_the_naive_full_mix(chunk):
    tl, clips = small_timeline()
    chunks = list(mixer.render(tl, clips, DEFAULT_TONES, gain_db=-3.0, chunk_samples=chunk))
    assert all(len(c) == chunk for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk
    assert all(c.dtype == np.float32 for c in chunks)
    out = np.concatenate(chunks)
    np.testing.assert_allclose(out, naive_mix(tl, clips, DEFAULT_TONES, -3.0), atol=2e-6)


@pytest.mark.parametrize("start", [0, 1, 2205, 30_000, 66_151])
def test_rendering_from_a_later_sample_is_the_tail_of_the_whole(start):
    tl, clips = small_timeline()
    whole = np.concatenate(list(mixer.render(tl, clips, DEFAULT_TONES, chunk_samples=5000)))
    tail = list(mixer.render(tl, clips, DEFAULT_TONES, chunk_samples=5000, start_sample=start))
    assert all(len(c) == 5000 for c in tail[:-1])
    np.testing.assert_array_equal(np.concatenate(tail), whole[start:])


@pytest.mark.parametrize("duration_ms", [1, 10, 999, 1001, 45_678, 3_600_001])
def test_total_length_is_exact(duration_ms):
    tl = timeline([], duration_ms)
    total = sum(len(c) for c in mixer.render(tl, {}, DEFAULT_TONES))
    assert total == round(duration_ms * RATE / 1000) == mixer.total_samples(tl)


@pytest.mark.parametrize("start_ms", [0, 1, 10, 333, 2999, 3001, 12_345])
def test_event_lands_on_its_sample(start_ms):
    click = np.zeros(50, np.int16)
    click[0] = 10000
    tl = timeline([speech(start_ms, FakeClip(click), "x")], 20_000)
    out = np.concatenate(list(mixer.render(tl, {"x": FakeClip(click)}, DEFAULT_TONES,
                                           chunk_samples=3000)))
    assert np.flatnonzero(out).tolist() == [round(start_ms * RATE / 1000)]


def test_sounds_running_past_the_end_are_cut_and_late_ones_ignored():
    clip = FakeClip(np.full(RATE, 1000, np.int16))
    tl = timeline([speech(500, clip, "a"), tone("done", 900, 1600), speech(5000, clip, "b")], 1000)
    out = np.concatenate(list(mixer.render(tl, {"a": clip, "b": clip}, DEFAULT_TONES)))
    assert len(out) == mixer.total_samples(tl)
    assert np.all(out[ms_to_samples(500):] != 0)


def test_render_checks_its_inputs_before_the_first_chunk():
    tl = timeline([speech(0, FakeClip(np.ones(10, np.int16)), "missing")], 100)
    with pytest.raises(ValueError, match="missing"):
        mixer.render(tl, {}, DEFAULT_TONES)
    with pytest.raises(ValueError, match="44100"):
        next(mixer.render(tl, {"missing": FakeClip(np.ones(10, np.int16), 44100)}, DEFAULT_TONES))
    with pytest.raises(ValueError, match="no tone"):
        next(mixer.render(timeline([tone("tick", 0)], 100), {}, {}))


def test_to_pcm16_rounds_and_clips():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 1 / 65536], np.float32)
    assert mixer.to_pcm16(x).tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 0]
    assert mixer.to_pcm16(x).dtype == np.dtype("<i2")


def test_clips_may_be_float_and_carry_a_scale():
    @dataclass
    class Scaled:
        samples: np.ndarray
        scale: float
        rate: int = RATE

    tl = timeline([speech(0, FakeClip(np.ones(4, np.int16)), "a")], 1)
    ones = np.full(4, 0.25, np.float32)
    out = np.concatenate(list(mixer.render(tl, {"a": Scaled(ones, 2.0)}, DEFAULT_TONES)))
    assert out[:4].tolist() == [0.5] * 4


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


@pytest.mark.parametrize("seed", [4, 5])
def test_measuring_pass_equals_the_meter_on_the_full_mix(seed):
    tl, clips = small_timeline(seed=seed)  # a cue over a glide: cross terms count
    meter = levels._Meter(tl, {t: len(c.samples) for t, c in clips.items()}, DEFAULT_TONES)
    assert meter.speech_tone
    voices = {t: meter.weigh(("speech", t), c.samples)[0].at(1 / 32768) for t, c in clips.items()}
    measured = meter.loudness(voices, DEFAULT_TONES)
    full = naive_mix(tl, clips, DEFAULT_TONES)
    assert measured == pytest.approx(loudness.integrated_loudness(full), abs=0.005)


def test_meter_handles_overlapping_tones_and_cues():
    clip = FakeClip(speechlike(1.0, seed=8))
    events = [speech(0, clip, "a"), speech(1010, clip, "b"),  # tails touch
              tone("inhale", 200, 3200), tone("tick", 500), tone("start", 520), tone("done", 2900)]
    tl = timeline(events, 4000)
    clips = {"a": clip, "b": clip}
    meter = levels._Meter(tl, {t: len(c.samples) for t, c in clips.items()}, DEFAULT_TONES)
    assert meter.tone_tone and meter.speech_speech
    voices = {t: meter.weigh(("speech", t), c.samples)[0].at(0.7 / 32768) for t, c in clips.items()}
    quieter = {n: replace(s, db=s.db - 3) for n, s in DEFAULT_TONES.items()}
    measured = meter.loudness(voices, quieter)
    full = naive_mix(tl, clips, quieter) * 0  # rebuild with the cue level 0.7
    for e in tl.events:
        start = ms_to_samples(e.start_ms)
        data = (clips[e.text].samples * 0.7 / 32768 if e.kind == "speech" else
                tones.synth(quieter[e.name], ms_to_samples(e.end_ms) - start))
        full[start:start + len(data)] += data[: len(full) - start]
    assert measured == pytest.approx(loudness.integrated_loudness(full), abs=0.005)


# --- shaping and the level plan -------------------------------------------------------------------


def test_soft_clip_bends_only_the_top():
    x = np.linspace(-2, 2, 4001).astype(np.float32)
    y = dynamics.soft_clip(x, 1.0)
    assert np.all(np.abs(y) < 1.0)
    small = np.abs(x) <= dynamics.KNEE
    np.testing.assert_array_equal(y[small], x[small])
    assert np.all(np.diff(y) > 0)  # monotonic: no fold-over


@pytest.mark.parametrize("budget", [10.0, 11.5, 13.0])
def test_shape_meets_a_peak_to_loudness_budget(budget):
    x = speechlike(2.5, seed=7) / 32768.0
    x = (x * 10 ** ((-16 - loudness.integrated_loudness(x)) / 20)).astype(np.float32)
    assert loudness.to_db(loudness.true_peak(x)) + 16 > budget  # it does need shaping
    y, peak = dynamics.shape(x, budget, -16.0)
    assert peak == pytest.approx(loudness.true_peak(y), rel=1e-6)
    exact = loudness.to_db(peak) - loudness.integrated_loudness(y)
    # The search estimates loudness; the level plan measures and corrects.
    assert budget - 0.5 < exact <= budget + 0.25


def test_level_voice_puts_every_clip_at_minus_16():
    for seed, level in [(1, 0.2), (2, 0.9), (3, 0.4)]:
        clip = levels.level_voice(FakeClip(speechlike(1.2, seed, level)))
        assert loudness.integrated_loudness(clip.as_float()) == pytest.approx(-16.0, abs=0.01)


def plan_and_mix(tl, clips, tone_specs, **kw):
    plan = levels.plan_levels(tl, clips, tone_specs, **kw)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    return plan, out.astype(np.float64)


@pytest.mark.parametrize("target,ceiling", [(-16.0, -1.2), (-15.55, -1.7), (-15.55, -2.9)])
def test_plan_reaches_the_target_under_the_ceiling(target, ceiling):
    rng = np.random.default_rng(9)
    clips = {f"cue {i}": FakeClip(speechlike(rng.uniform(0.6, 3.0), seed=20 + i, level=0.9))
             for i in range(6)}
    events, t = [], 0
    for _ in range(4):
        for text, clip in clips.items():
            events.append(speech(t, clip, text))
            t = events[-1].end_ms + 700
            events.append(tone("tick", t - 350))
        events.append(tone("inhale", t, t + 4000))
        events.append(speech(t, clips["cue 0"], "cue 0"))  # spoken over the glide
        t += 4500
    tl = timeline(events, t)
    plan, out = plan_and_mix(tl, clips, DEFAULT_TONES, target_lufs=target, ceiling_dbtp=ceiling)
    measured = pyloudnorm.Meter(RATE, filter_class="DeMan").integrated_loudness(out)
    assert plan.loudness_lufs == pytest.approx(measured, abs=0.02)
    assert target - levels.GIVE_DB - 0.02 <= measured <= target + 0.02
    assert loudness.to_db(loudness.true_peak(out)) <= ceiling + 0.02
    assert loudness.to_db(loudness.true_peak(out)) <= plan.peak_bound_dbtp + 0.02


def test_streaming_plan_starts_before_shaping_and_keeps_the_targets():
    rng = np.random.default_rng(12)
    clips = {f"cue {i}": FakeClip(speechlike(rng.uniform(0.6, 3.0), seed=40 + i, level=0.9))
             for i in range(8)}
    events, t = [], 0
    for text, clip in list(clips.items()) * 3:
        events.append(speech(t, clip, text))
        t = events[-1].end_ms + 600
        events.append(tone("inhale", t, t + 3000))
        t += 3200
    tl = timeline(events, t)
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7,
                              streaming=True)
    assert all(hasattr(c, "resolve") for c in plan.clips.values())  # shaped as the mix goes
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    plan.close()
    measured = loudness.integrated_loudness(out)
    assert measured == pytest.approx(-15.55, abs=0.3)
    assert measured == pytest.approx(plan.loudness_lufs, abs=0.3)
    assert loudness.to_db(loudness.true_peak(out)) <= -1.7 + 0.01


def breathing(cycles: int = 12, cue_s: float = 0.6, into_ms: int = 0, in_ms: int = 4000,
              out_ms: int = 6000):
    """Brief cues over long quiet glides: a breathing exercise, as `breathe` makes it."""
    clips = {"in": FakeClip(speechlike(cue_s, seed=81, level=0.9)),
             "out": FakeClip(speechlike(cue_s, seed=82, level=0.9))}
    events, t = [], 0
    for _ in range(cycles):
        events += [tone("inhale", t, t + in_ms), speech(t + into_ms, clips["in"], "in"),
                   tone("exhale", t + in_ms, t + in_ms + out_ms),
                   speech(t + in_ms + into_ms, clips["out"], "out")]
        t += in_ms + out_ms
    return timeline(events, t), clips


def test_streaming_raises_the_tones_when_turned_down_cues_leave_the_mix_short():
    # Reaching -15.55 LUFS takes ~7 dB of gain over the quiet glides, which would
    # put the cues' peaks far past the ceiling: they are turned down to it, and the
    # glides, under their own headroom, make up the loudness instead.
    tl, clips = breathing()
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7,
                              streaming=True)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    plan.close()
    assert loudness.integrated_loudness(out) == pytest.approx(-15.55, abs=0.3)
    assert loudness.to_db(loudness.true_peak(out)) <= -1.7 + 0.01
    raised = plan.tones["inhale"].db - DEFAULT_TONES["inhale"].db
    assert raised > 1.0  # the glides went up...
    for spec in plan.tones.values():  # ...but no tone past a raised tone's headroom
        assert spec.db + plan.gain_db <= -1.7 - levels.BOOST_HEADROOM_DB + 0.1


def test_tones_raised_in_several_rounds_keep_the_peak_ceiling():
    # Three rounds of raising the tones: each cue's peak budget must be the one
    # for the tones finally under it, or cue and tone together pass the ceiling.
    tl, clips = breathing(8, cue_s=1.2, into_ms=1500, in_ms=4000, out_ms=4000)
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-4.0,
                              streaming=True)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    plan.close()
    assert plan.tones["inhale"].db > DEFAULT_TONES["inhale"].db  # raised
    assert loudness.to_db(loudness.true_peak(out)) <= -4.0 + 0.01


def test_streaming_leaves_the_tones_alone_when_the_voice_carries_the_loudness():
    tl, clips = memo_routine()
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7,
                              streaming=True)
    plan.close()
    assert plan.tones["exhale"].db == DEFAULT_TONES["exhale"].db


def memo_routine():
    """Cues spoken again minutes apart (the shaper lets them go and rebuilds them), over tones."""
    rng = np.random.default_rng(21)
    clips = {f"cue {i}": FakeClip(speechlike(rng.uniform(0.6, 2.5), seed=60 + i, level=0.9))
             for i in range(12)}
    events, t = [], 0
    for text, clip in list(clips.items()) * 6:
        events.append(speech(t, clip, text))
        t = events[-1].end_ms + 500
        events.append(tone("exhale", t, t + 2000))
        t += 2300
    return timeline(events, t), clips


def streamed(tl, clips, **kw):
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, streaming=True, **kw)
    try:
        return np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    finally:
        plan.close()


@pytest.mark.parametrize("target,ceiling", [(-16.0, -1.2), (-15.55, -1.7)])
def test_memo_gives_the_same_samples(tmp_path, monkeypatch, target, ceiling):
    tl, clips = memo_routine()
    plain = streamed(tl, clips, target_lufs=target, ceiling_dbtp=ceiling)  # every cue shaped once
    monkeypatch.setattr(levels._Shaper, "KEEP", 3)  # now rebuilt from recipes when spoken again
    np.testing.assert_array_equal(streamed(tl, clips, target_lufs=target, ceiling_dbtp=ceiling), plain)
    # First at another target (the measurements are shared), then twice at this one:
    # measured and planned afresh, then everything from the memo (plan and recipes).
    streamed(tl, clips, target_lufs=target - 1.0, ceiling_dbtp=ceiling, memo_dir=tmp_path)
    for _ in range(2):
        again = streamed(tl, clips, target_lufs=target, ceiling_dbtp=ceiling, memo_dir=tmp_path)
        np.testing.assert_array_equal(again, plain)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz"]


def test_temporary_memo_files_of_killed_writers_are_swept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = tmp_path / f".{dead}-k2j4.tmp"  # a writer killed mid-write
    live = tmp_path / f".{os.getpid()}-a9x1.tmp"  # one still running
    for p in (left, live):
        p.write_bytes(b"partial")
    tl, clips = memo_routine()
    streamed(tl, clips, memo_dir=tmp_path)
    assert live.exists() and not left.exists()
    assert sorted(p.suffix for p in tmp_path.iterdir() if p != live) == [".json", ".npz"]


def test_gated_loudness_takes_rounding_under_zero_for_silence():
    # Energies summed from sounds and their cross terms can land a hair under
    # zero in a silent block; that is silence, and no warning reaches the user.
    energies = np.concatenate([np.full(40, 5e3), np.full(8, -1e-12), np.full(40, 5e3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loudness.gated_loudness(energies) == loudness.gated_loudness(np.maximum(energies, 0))


def test_memo_is_keyed_by_the_clips(tmp_path):
    tl, clips = memo_routine()
    streamed(tl, clips, memo_dir=tmp_path)
    quieter = {text: FakeClip(np.asarray(c.samples) // 2) for text, c in clips.items()}
    np.testing.assert_array_equal(streamed(tl, quieter, memo_dir=tmp_path), streamed(tl, quieter))
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_a_damaged_memo_is_measured_again(tmp_path):
    tl, clips = memo_routine()
    plain = streamed(tl, clips, memo_dir=tmp_path)
    for path in tmp_path.iterdir():
        path.write_bytes(path.read_bytes()[:100])
    np.testing.assert_array_equal(streamed(tl, clips, memo_dir=tmp_path), plain)


def test_a_memo_that_does_not_hold_a_plan_is_not_used(tmp_path):
    import json

    tl, clips = memo_routine()
    plain = streamed(tl, clips, memo_dir=tmp_path)
    (path,) = tmp_path.glob("*.json")
    memo = json.loads(path.read_bytes().partition(b"\n")[2])

    def sealed(data) -> bytes:  # checksummed as voiceflex does: only its contents are wrong
        body = json.dumps(data).encode()
        return levels._seal(path.stem, body).encode() + b"\n" + body

    for done in memo["plans"].values():
        done["tones_db"] = {}
        done["recipes"] = {text: ["x", None] for text in done["recipes"]}
    path.write_bytes(sealed(memo))
    np.testing.assert_array_equal(streamed(tl, clips, memo_dir=tmp_path), plain)
    path.write_bytes(sealed({"plans": [], "loudness": 3}))
    np.testing.assert_array_equal(streamed(tl, clips, memo_dir=tmp_path), plain)


def test_shaper_holds_a_bounded_number_of_cues(monkeypatch):
    monkeypatch.setattr(levels._Shaper, "KEEP", 4)
    tl, clips = memo_routine()
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, streaming=True)
    shaper = next(iter(plan.clips.values())).shaper
    held = []
    for _ in mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db, chunk_samples=RATE):
        held.append(shaper.held)
    plan.close()
    assert max(held) == 4 < len(clips)  # 12 cues in turn, each spoken again 12 cues later


def test_mixers_reading_one_plan_at_once_get_the_same_samples(monkeypatch):
    # An export encodes parts of the track in parallel, each part mixed in its
    # own thread from one level plan; the cue shaper serves them all.
    monkeypatch.setattr(levels._Shaper, "KEEP", 2)  # most uses rebuilt from their recipes
    tl, clips = memo_routine()
    plain = streamed(tl, clips)
    plan = levels.plan_levels(tl, clips, DEFAULT_TONES, streaming=True)
    starts = [0, len(plain) // 3, 2 * len(plain) // 3]
    parts: dict[int, np.ndarray] = {}

    def read(start):
        chunks = mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db, start_sample=start,
                              chunk_samples=RATE // 2)
        parts[start] = np.concatenate(list(chunks))

    threads = [threading.Thread(target=read, args=(s,)) for s in starts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plan.close()
    for start in starts:
        np.testing.assert_array_equal(parts[start], plain[start:])


def test_streaming_turns_down_a_cue_it_cannot_shape_enough(monkeypatch):
    clip = FakeClip(speechlike(2, seed=13, level=0.9))
    tl = timeline([speech(0, clip, "a"), speech(3000, clip, "a")], 6000)
    monkeypatch.setattr(levels, "shape_threshold",
                        lambda x, budget, target: (x, loudness.true_peak(x), None, target))
    plan = levels.plan_levels(tl, {"a": clip}, DEFAULT_TONES, ceiling_dbtp=-6.0, streaming=True)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    assert loudness.to_db(loudness.true_peak(out)) <= -6.0 + 0.01


def test_plan_caps_a_tone_that_would_pass_the_ceiling():
    loud = dict(DEFAULT_TONES)
    loud["tick"] = replace(loud["tick"], db=0.0)  # short: barely moves the loudness
    clip = FakeClip(speechlike(6, seed=4))
    tl = timeline([speech(0, clip, "a"), tone("tick", 6500)], 7000)
    plan, out = plan_and_mix(tl, {"a": clip}, loud, ceiling_dbtp=-1.2)
    assert plan.tones["tick"].db + plan.gain_db <= -1.2 - levels.TONE_HEADROOM_DB + 0.3
    assert loudness.to_db(loudness.true_peak(out)) <= -1.2 + 0.02


def test_plan_of_silence_is_silence():
    tl = timeline([], 5000)
    plan = levels.plan_levels(tl, {}, DEFAULT_TONES)
    assert plan.gain_db == 0.0 and plan.loudness_lufs == float("-inf")


def test_plan_needs_every_clip():
    tl = timeline([speech(0, FakeClip(np.ones(10, np.int16)), "gone")], 100)
    with pytest.raises(ValueError, match="gone"):
        levels.plan_levels(tl, {}, DEFAULT_TONES)


def test_glide_specs_are_accepted_as_overrides():
    spec = ToneSpec(200.0, 3000, freq_end=400.0, db=-20.0)
    x = tones.synth(spec, ms_to_samples(3000))
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-20.0, abs=0.3)
