"""The mixer: chunks of the timeline's sounds at their samples, from any start, exactly as the whole."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from helpers.fakes import FakeClip
from test_audio import naive_mix, small_timeline, speech, timeline, tone

from voiceflex.audio import mixer
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.routine.model import DEFAULT_TONES


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
