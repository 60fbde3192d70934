"""The sound bed (issue 15): sources, loops, ducking, levels, errors, memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from voiceflex import pipeline
from voiceflex.audio.output_format import WAV
from voiceflex.planned import Plan, render as render_plan
from voiceflex.audio import bed as bedmod
from voiceflex.audio import duck, mixer
from voiceflex.audio.bedgen import LOOP
from voiceflex.audio.loudness import to_db
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.cli import main
from voiceflex.errors import RoutineError, UsageError
from voiceflex.routine.model import BEDS, Background

ROUTINE = """\
title: Bed test
background:
  sound: {sound}
steps:
  - say: Kneel on your left knee and breathe.
  - pause: 6s
  - say: Shift your weight forward.
  - pause: 5s
  - hold: 12s
    say: Hold it.
    countdown: 3
  - pause: 4s
  - say: Done for today.
"""


def _routine(folder: Path, sound: str = "rain", text: str = ROUTINE) -> Path:
    path = folder / "bed.yaml"
    path.write_text(text.format(sound=sound), encoding="utf-8")
    return path


def _music(path: Path, seconds: float = 8.0) -> Path:
    """A real audio file: a chord over pink noise, stereo at 44.1 kHz, in the format `path` names."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=330:duration={seconds}", "-f", "lavfi", "-i",
                    f"anoisesrc=d={seconds}:c=pink:a=0.2:seed=7", "-filter_complex", "amix=inputs=2",
                    "-ac", "2", "-ar", "44100", str(path)], check=True)
    return path


def _bed_alone(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The track (float, full scale 1) and the bed's part of it: the same level plan mixed without it."""
    track = plan.track()
    try:
        whole = np.concatenate(list(track.read())).astype(np.float64) / 32768
        levels = track._planned()
        dry = np.concatenate([mixer.to_pcm16(c) for c in mixer.render(
            plan.timeline, levels.clips, levels.tones, gain_db=levels.gain_db)]).astype(np.float64) / 32768
    finally:
        track.close()
    return whole, whole - dry


# ---- the envelope ------------------------------------------------------------------------


def test_envelope_is_down_by_duck_under_every_cue_and_up_between(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path)), engine=fake_engine, music="none")
    env = duck.envelope(plan.timeline, 12.0)
    speech = [e for e in plan.timeline.events if e.kind == "speech"]
    for e in speech:
        a, b = ms_to_samples(e.start_ms) - duck.LEAD, ms_to_samples(e.end_ms) + duck.TRAIL
        g = env.gain(max(a, 0), b)
        fade = env.at(np.arange(max(a, 0), b)) / 10 ** (-12 / 20)  # the fades alone
        inside = fade > 0.999
        assert np.allclose(to_db(1.0) + 20 * np.log10(g[inside]), -12.0, atol=0.01)
    # Half-way through each long pause the bed is back up.
    first_pause = ms_to_samples(speech[0].end_ms + 3000)
    assert env.at(np.array([first_pause]))[0] == pytest.approx(1.0)
    # Smooth: no step bigger than a raised cosine over 200 ms allows (12 dB ramps).
    g = env.gain(0, env.total)
    assert np.abs(np.diff(g)).max() < 1.0 / duck.DOWN * 2


def test_close_cues_keep_the_bed_down_between_them(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path)), engine=fake_engine, music="none")
    env = duck.envelope(plan.timeline, 12.0)
    count = [e for e in plan.timeline.events if e.kind == "speech" and e.text in ("three", "two", "one")]
    lo, hi = ms_to_samples(count[0].start_ms), ms_to_samples(count[-1].end_ms)
    assert env.gain(lo, hi).max() == pytest.approx(10 ** (-12 / 20), rel=1e-5)


def test_tones_duck_only_when_asked(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path)), engine=fake_engine, music="none")
    tone = next(e for e in plan.timeline.events if e.kind == "tone" and e.name == "end")
    at = np.array([ms_to_samples(tone.start_ms) + 10])
    assert duck.envelope(plan.timeline, 12.0, duck_tones=True).at(at)[0] < 0.26
    assert duck.envelope(plan.timeline, 12.0).at(at)[0] > 0.9


def test_bed_fades_in_over_2_s_and_out_over_the_last_3_s(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path)), engine=fake_engine, music="none")
    env = duck.envelope(plan.timeline, 0.0)
    total = env.total
    assert env.at(np.array([0, ms_to_samples(1000), ms_to_samples(2000)])).tolist() == pytest.approx(
        [0.0, 0.5, 1.0])
    assert env.at(np.array([total - ms_to_samples(3000), total - ms_to_samples(1500), total]
                           )).tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_the_fast_gain_is_the_envelope_itself():
    rng = np.random.default_rng(5)
    for total in (3 * RATE, 40 * RATE):  # a track shorter than both fades, and a longer one
        starts = np.sort(rng.choice(total, 6, replace=False)).astype(np.int64)
        env = duck.Envelope(total, 9.0, starts, starts + rng.integers(1, 30000, 6))
        ends = np.maximum.accumulate(env.ends)
        env = duck.Envelope(total, 9.0, starts, ends)
        for a in range(0, total, 7001):
            b = min(a + 9000, total)
            assert np.array_equal(env.gain(a, b), env.at(np.arange(a, b)).astype(np.float32))


def test_the_schema_knows_the_background_key():
    from voiceflex.routine.schema import json_schema

    background = json_schema()["properties"]["background"]
    assert background["required"] == ["sound"]
    assert set(background["properties"]) == {"sound", "level", "duck", "duck_tones"}


# ---- sources -----------------------------------------------------------------------------


def _largest_step(x: np.ndarray) -> float:
    return float(np.percentile(np.abs(np.diff(x)), 99.99))


@pytest.mark.parametrize("name", BEDS)
def test_generated_beds_loop_without_a_seam(tmp_path, name):
    source, _ = bedmod.prepare(Background(name), tmp_path)
    assert source.period == LOOP and source.xfade == 0
    around = source.samples(LOOP - 2000, LOOP + 2000)
    seam = abs(float(around[2000]) - float(around[1999]))
    assert seam <= _largest_step(source.samples(0, LOOP))
    # and the same samples on every pass, from any start
    assert np.array_equal(source.samples(5, 500), source.samples(3 * LOOP + 5, 3 * LOOP + 500))


def test_generated_beds_are_reproducible(tmp_path):
    a, _ = bedmod.prepare(Background("rain"), tmp_path / "a")
    b, _ = bedmod.prepare(Background("rain"), tmp_path / "b")
    assert a.path.read_bytes() == b.path.read_bytes()


@pytest.mark.integration
def test_a_file_loops_with_a_crossfade_and_no_click(tmp_path):
    music = _music(tmp_path / "music.ogg")
    source, _ = bedmod.prepare(Background(str(music)), tmp_path / "cache")
    assert source.length == pytest.approx(8 * RATE, abs=RATE // 10)
    assert source.xfade == bedmod.XFADE and source.period % 2205 == 0
    x = source.samples(0, 4 * source.period)
    steps = np.abs(np.diff(x))
    typical = float(np.percentile(steps, 99.9))
    for k in (1, 2, 3):
        seam = k * source.period
        assert steps[seam - 5:seam + 5].max() <= 2 * typical
    # Through the crossfade the level holds (no dip or bump of more than 3 dB in 50 ms blocks).
    block = ms_to_samples(50)
    seg = x[source.period - 20 * block:source.period + source.xfade + 20 * block]
    rms = np.sqrt(np.mean(seg[:len(seg) // block * block].reshape(-1, block) ** 2, axis=1))
    assert to_db(rms.max() / rms.min()) < 3.0


@pytest.mark.integration
def test_a_second_export_decodes_nothing(tmp_path, monkeypatch):
    music = _music(tmp_path / "music.mp3")
    first, key = bedmod.prepare(Background(str(music)), tmp_path / "cache")
    monkeypatch.setattr(bedmod, "_decode", lambda *a: pytest.fail("decoded again"))
    again, same = bedmod.prepare(Background(str(music)), tmp_path / "cache")
    assert (again.path, same) == (first.path, key)


def test_a_damaged_cache_entry_is_made_again(tmp_path):
    source, _ = bedmod.prepare(Background("drone"), tmp_path)
    (source.path.parent / "bed.json").write_text("{", encoding="utf-8")
    again, _ = bedmod.prepare(Background("drone"), tmp_path)
    assert again.loudness == pytest.approx(source.loudness)


# ---- in the mix --------------------------------------------------------------------------


def test_bed_energy_under_cues_is_duck_db_below_the_gaps(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path, "brown-noise")), engine=fake_engine)
    _, bed = _bed_alone(plan)
    speech = [e for e in plan.timeline.events if e.kind == "speech"]
    under = np.concatenate([bed[ms_to_samples(e.start_ms):ms_to_samples(e.end_ms)] for e in speech])
    gaps = [(speech[0].end_ms + 1000, speech[1].start_ms - 1000), (speech[1].end_ms + 1000, speech[1].end_ms + 3500)]
    between = np.concatenate([bed[ms_to_samples(a):ms_to_samples(b)] for a, b in gaps])
    drop = 10 * np.log10(np.mean(between ** 2) / np.mean(under ** 2))
    assert drop >= 12 - 1


def test_the_bed_sits_level_db_under_the_voice(tmp_path, fake_engine):
    from voiceflex.audio.loudness import integrated_loudness

    text = ROUTINE.replace("  sound: {sound}", "  sound: {sound}\n  level: -15")
    plan = pipeline.plan(str(_routine(tmp_path, "rain", text)), engine=fake_engine)
    whole, bed = _bed_alone(plan)
    env = plan.bed.envelope.gain(0, len(bed)).astype(np.float64)
    raw = bed[env > 0.999] / env[env > 0.999]  # the bed where it is not ducked or faded
    voice = np.concatenate([(whole - bed)[ms_to_samples(e.start_ms):ms_to_samples(e.end_ms)]
                            for e in plan.timeline.events if e.kind == "speech"])
    assert integrated_loudness(raw.astype(np.float32)) - integrated_loudness(voice.astype(np.float32)) \
        == pytest.approx(-15, abs=1.0)


def test_play_and_wav_export_are_the_same_samples_with_a_bed(tmp_path, fake_engine):
    plan = pipeline.plan(str(_routine(tmp_path, "drone")), engine=fake_engine)
    played = np.concatenate(list(render_plan(plan)))
    later = np.concatenate(list(render_plan(plan, start_sample=123_457)))
    assert np.array_equal(played[123_457:], later)
    track = plan.track()
    try:
        from voiceflex import export

        path = export.write(track, plan.timeline, plan.routine, tmp_path / "out.wav", output=WAV)
    finally:
        track.close()
    import wave

    with wave.open(str(path)) as w:
        written = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.array_equal(written, played)


def test_music_none_turns_the_routines_bed_off_and_a_name_replaces_it(tmp_path, fake_engine):
    path = str(_routine(tmp_path, "rain"))
    assert pipeline.plan(path, engine=fake_engine, music="none").bed is None
    assert bedmod.chosen(pipeline.plan(path, engine=fake_engine).routine.background, "drone").sound == "drone"


def test_the_config_files_music_is_under_the_routine_and_the_command_line(tmp_path, fake_engine):
    from types import MappingProxyType

    from voiceflex.config import Settings

    def source(path, **cli):
        settings = Settings(cli=MappingProxyType(cli), file=MappingProxyType({"music": "drone"}))
        planned = pipeline.plan(str(path), settings, engine=fake_engine)
        return planned.bed and planned.bed.source.path.parent.name

    cache = Path(os.environ["VOICEFLEX_CACHE_DIR"]) / "beds"
    name = {bed: bedmod.prepare(Background(bed), cache)[0].path.parent.name for bed in ("rain", "drone")}
    with_bed = _routine(tmp_path, "rain")
    without = tmp_path / "plain.yaml"
    without.write_text("title: Plain\nsteps:\n  - say: Hello there.\n", encoding="utf-8")
    assert source(without) == name["drone"]  # the config's, where the routine has none
    assert source(with_bed) == name["rain"]  # the routine's over the config's
    assert source(with_bed, music="drone") == name["drone"]  # the command line's over both
    assert source(with_bed, music="none") is None


def test_lacrosse_release_has_a_soft_bed_by_default():
    from voiceflex.routine import read

    routine, problems = read("lacrosse-ball-release")
    assert not problems and routine.background is not None
    assert routine.background.sound in BEDS and routine.background.level < -20


def test_the_memo_key_includes_the_bed(tmp_path, fake_engine):
    path = str(_routine(tmp_path, "rain"))
    for music in ("rain", "drone", "none"):
        list(render_plan(pipeline.plan(path, engine=fake_engine, music=music)))
    memos = list((Path(os.environ["VOICEFLEX_CACHE_DIR"]) / "levels").glob("*.json"))
    assert len(memos) == 3


# ---- errors ------------------------------------------------------------------------------


def test_missing_and_escaping_bed_files_are_located_errors(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    outside = _routine(tmp_path / "sub", "../elsewhere.ogg")
    assert main(["validate", str(outside)]) == 2
    assert "bed.yaml:3:10: background sound `../elsewhere.ogg` points outside the routine's folder" \
        in capsys.readouterr().out
    missing = _routine(tmp_path, "rian.ogg")
    assert main(["validate", str(missing)]) == 2
    assert "bed.yaml:3:10: background sound `rian.ogg`: no such file" in capsys.readouterr().out


@pytest.mark.integration
def test_a_file_that_is_no_audio_is_a_located_error(tmp_path, fake_engine):
    (tmp_path / "notes.mp3").write_text("not music at all\n" * 100, encoding="utf-8")
    with pytest.raises(RoutineError) as caught:
        pipeline.plan(str(_routine(tmp_path, "notes.mp3")), engine=fake_engine)
    assert str(caught.value).startswith(f"{tmp_path / 'bed.yaml'}:3:10: background sound `notes.mp3` "
                                        "is not an audio file ffmpeg can read")
    assert not list((Path(os.environ["VOICEFLEX_CACHE_DIR"]) / "beds").glob("*/bed.s16"))


def test_a_missing_music_file_is_a_usage_error(tmp_path, fake_engine):
    with pytest.raises(UsageError, match="--music nowhere.ogg: no such file"):
        pipeline.plan(str(_routine(tmp_path)), engine=fake_engine, music="nowhere.ogg")


@pytest.mark.integration
def test_ffmpeg_failing_midway_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("ffmpeg") or "ffmpeg"
    (shim / "ffmpeg").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in *s16le\\ -) head -c 300000 /dev/zero; echo "Error decoding frame 812" >&2; exit 1;; esac
        exec {real} "$@"
        """))
    (shim / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "song.ogg").write_bytes(b"OggS" + bytes(1000))
    out = tmp_path / "out"
    code = main(["export", str(_routine(tmp_path, "song.ogg")), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "stopped decoding it after 6.8 s" in err
    assert not out.exists() or not any(out.iterdir())
    assert not list((Path(os.environ["VOICEFLEX_CACHE_DIR"]) / "beds").iterdir())


# ---- real exports ------------------------------------------------------------------------


def _measured(path: Path) -> tuple[float, float]:
    from voiceflex.check.decoding import parse_ebur128

    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af",
                           "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    found = parse_ebur128(done.stderr)
    return found.integrated_lufs, found.true_peak_dbtp


@pytest.mark.integration
@pytest.mark.parametrize("music", [*BEDS, "file"])
def test_real_exports_with_a_bed_meet_loudness_and_peak(tmp_path, music):
    if music == "file":
        music = str(_music(tmp_path / "song.mp3", seconds=20))
    out = tmp_path / "out"
    assert main(["export", "desk-reset", "-o", str(out), "--music", music]) == 0
    lufs, peak = _measured(out / "desk-reset.mp3")
    assert lufs == pytest.approx(-16.0, abs=1.0)
    assert peak <= -1.0


@pytest.mark.integration
def test_check_passes_the_lacrosse_release_with_its_bed(capsys):
    assert main(["check", "lacrosse-ball-release"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")


@pytest.mark.integration
def test_memory_stays_flat_over_two_hours_on_a_long_file_bed(tmp_path):
    music = _music(tmp_path / "long.ogg", seconds=20 * 60)  # 106 MB as float32, were it held whole
    routine = tmp_path / "long.yaml"
    routine.write_text(textwrap.dedent("""\
        title: Two hours
        background: {sound: long.ogg}
        steps:
          - repeat: 120
            steps:
              - say: Round {round}.
              - pause: 59s
        """), encoding="utf-8")
    # VmHWM, the process's own peak: ru_maxrss would also count what the
    # forking test process held before the exec.
    script = textwrap.dedent(f"""\
        import re
        from voiceflex import pipeline, planned
        def peak_mb():
            with open("/proc/self/status") as f:
                return int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1)) // 1024
        plan = pipeline.plan({str(routine)!r})
        before = peak_mb()
        n = sum(len(c) for c in planned.render(plan))
        print(n, before, peak_mb())
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    samples, before_mb, after_mb = map(int, done.stdout.split())
    assert samples >= 2 * 3600 * RATE * 0.95
    assert after_mb - before_mb < 40
    assert after_mb < 150


@pytest.mark.parametrize("name", BEDS)
def test_a_salted_bed_is_another_loop_of_the_same_kind(name):
    # scripts/bed_wer.py hears a second loop of each bed to tell the listener's
    # noise from the bed's effect: other samples, the same loop length and peak.
    from voiceflex.audio import bedgen

    plain, salted = bedgen.generate(name), bedgen.generate(name, salt="2")
    assert np.array_equal(plain, bedgen.generate(name))  # seeded: the same every time
    assert len(salted) == len(plain) == LOOP and np.abs(salted).max() == np.abs(plain).max()
    assert abs(np.corrcoef(plain, salted)[0, 1]) < 0.9
    assert abs(to_db(float(np.std(salted)) / float(np.std(plain)))) < 3  # alike in level (dB)
