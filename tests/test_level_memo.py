"""The level memo: the same samples from a memo, keyed by the clips, sealed, swept and measured again when damaged."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from helpers.fakes import FakeClip
from test_audio import cues_over_tones

from voiceflex.audio import levels, loudness, mixer
from voiceflex.audio.levels import memo as level_memo
from voiceflex.audio.levels import shaper as level_shaper
from voiceflex.routine.model import DEFAULT_TONES


def memo_routine():
    """Cues spoken again minutes apart (the shaper lets them go and rebuilds them), over tones."""
    return cues_over_tones("exhale", seed=21, first_seed=60, count=12, longest_s=2.5, repeats=6,
                           gap_ms=500, tone_ms=2000, step_ms=2300)


def streamed(tl, clips, **kw):
    plan = levels.stream_levels(tl, clips, DEFAULT_TONES, **kw)
    try:
        return np.concatenate(list(mixer.render(tl, plan.clips, plan.tones, gain_db=plan.gain_db)))
    finally:
        plan.close()


@pytest.mark.parametrize("target,ceiling", [(-16.0, -1.2), (-15.55, -1.7)])
def test_memo_gives_the_same_samples(tmp_path, monkeypatch, target, ceiling):
    tl, clips = memo_routine()
    plain = streamed(tl, clips, target_lufs=target, ceiling_dbtp=ceiling)  # every cue shaped once
    monkeypatch.setattr(level_shaper.Shaper, "KEEP", 3)  # now rebuilt from recipes when spoken again
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
        return level_memo._seal(path.stem, body).encode() + b"\n" + body

    for done in memo["plans"].values():
        done["tones_db"] = {}
        done["recipes"] = {text: ["x", None] for text in done["recipes"]}
    path.write_bytes(sealed(memo))
    np.testing.assert_array_equal(streamed(tl, clips, memo_dir=tmp_path), plain)
    path.write_bytes(sealed({"plans": [], "loudness": 3}))
    np.testing.assert_array_equal(streamed(tl, clips, memo_dir=tmp_path), plain)
