"""The level plan: the analytic meter against the mixed track, shaping, both plans and the shaper thread."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pyloudnorm
import pytest

from helpers.fakes import FakeClip
from test_audio import cues_over_tones, naive_mix, small_timeline, speech, speechlike, timeline, tone
from test_level_memo import memo_routine, streamed

from voiceflex.audio import dynamics, levels, loudness, mixer, tones
from voiceflex.audio.levels import clips as level_clips
from voiceflex.audio.levels import meter as level_meter
from voiceflex.audio.levels import plan as level_plan
from voiceflex.audio.levels import shaper as level_shaper
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.routine.model import DEFAULT_TONES


@pytest.mark.parametrize("seed", [4, 5])
def test_measuring_pass_equals_the_meter_on_the_full_mix(seed):
    tl, clips = small_timeline(seed=seed)  # a cue over a glide: cross terms count
    meter = level_meter.Meter(tl, {t: len(c.samples) for t, c in clips.items()}, DEFAULT_TONES)
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
    meter = level_meter.Meter(tl, {t: len(c.samples) for t, c in clips.items()}, DEFAULT_TONES)
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
    plan = levels.exact_levels(tl, clips, tone_specs, **kw)
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
    assert target - level_plan.GIVE_DB - 0.02 <= measured <= target + 0.02
    assert loudness.to_db(loudness.true_peak(out)) <= ceiling + 0.02
    assert loudness.to_db(loudness.true_peak(out)) <= plan.peak_bound_dbtp + 0.02


def test_streaming_plan_starts_before_shaping_and_keeps_the_targets():
    tl, clips = cues_over_tones("inhale", seed=12, first_seed=40, count=8, longest_s=3.0, repeats=3,
                                gap_ms=600, tone_ms=3000, step_ms=3200)
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7)
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
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    plan.close()
    assert loudness.integrated_loudness(out) == pytest.approx(-15.55, abs=0.3)
    assert loudness.to_db(loudness.true_peak(out)) <= -1.7 + 0.01
    raised = plan.tones["inhale"].db - DEFAULT_TONES["inhale"].db
    assert raised > 1.0  # the glides went up...
    for spec in plan.tones.values():  # ...but no tone past a raised tone's headroom
        assert spec.db + plan.gain_db <= -1.7 - level_plan.BOOST_HEADROOM_DB + 0.1


def test_tones_raised_in_several_rounds_keep_the_peak_ceiling():
    # Three rounds of raising the tones: each cue's peak budget must be the one
    # for the tones finally under it, or cue and tone together pass the ceiling.
    tl, clips = breathing(8, cue_s=1.2, into_ms=1500, in_ms=4000, out_ms=4000)
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-4.0)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    plan.close()
    assert plan.tones["inhale"].db > DEFAULT_TONES["inhale"].db  # raised
    assert loudness.to_db(loudness.true_peak(out)) <= -4.0 + 0.01


def test_streaming_leaves_the_tones_alone_when_the_voice_carries_the_loudness():
    tl, clips = memo_routine()
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES, target_lufs=-15.55, ceiling_dbtp=-1.7)
    plan.close()
    assert plan.tones["exhale"].db == DEFAULT_TONES["exhale"].db


def test_shaper_holds_a_bounded_number_of_cues(monkeypatch):
    monkeypatch.setattr(level_shaper.Shaper, "KEEP", 4)
    tl, clips = memo_routine()
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES)
    shaper = next(iter(plan.clips.values())).shaper
    held = []
    for _ in mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db, chunk_samples=RATE):
        held.append(shaper.held)
    plan.close()
    assert max(held) == 4 < len(clips)  # 12 cues in turn, each spoken again 12 cues later


def test_mixers_reading_one_plan_at_once_get_the_same_samples(monkeypatch):
    # An export encodes parts of the track in parallel, each part mixed in its
    # own thread from one level plan; the cue shaper serves them all.
    monkeypatch.setattr(level_shaper.Shaper, "KEEP", 2)  # most uses rebuilt from their recipes
    tl, clips = memo_routine()
    plain = streamed(tl, clips)
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES)
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
    monkeypatch.setattr(level_clips, "shape_threshold",
                        lambda x, budget, target: (x, loudness.true_peak(x), None, target))
    plan = levels.stream_levels(tl, {"a": clip}, DEFAULT_TONES, ceiling_dbtp=-6.0)
    out = np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    assert loudness.to_db(loudness.true_peak(out)) <= -6.0 + 0.01


def test_plan_caps_a_tone_that_would_pass_the_ceiling():
    loud = dict(DEFAULT_TONES)
    loud["tick"] = replace(loud["tick"], db=0.0)  # short: barely moves the loudness
    clip = FakeClip(speechlike(6, seed=4))
    tl = timeline([speech(0, clip, "a"), tone("tick", 6500)], 7000)
    plan, out = plan_and_mix(tl, {"a": clip}, loud, ceiling_dbtp=-1.2)
    assert plan.tones["tick"].db + plan.gain_db <= -1.2 - level_plan.TONE_HEADROOM_DB + 0.3
    assert loudness.to_db(loudness.true_peak(out)) <= -1.2 + 0.02


def test_plan_of_silence_is_silence():
    tl = timeline([], 5000)
    plan = levels.exact_levels(tl, {}, DEFAULT_TONES)
    assert plan.gain_db == 0.0 and plan.loudness_lufs == float("-inf")


def test_plan_needs_every_clip():
    tl = timeline([speech(0, FakeClip(np.ones(10, np.int16)), "gone")], 100)
    with pytest.raises(ValueError, match="gone"):
        levels.exact_levels(tl, {}, DEFAULT_TONES)
