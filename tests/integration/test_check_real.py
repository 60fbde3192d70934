"""`voiceflex check` with the real recogniser, espeak and ffmpeg: correct renders pass, broken ones fail."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voiceflex import pipeline
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.check import check

pytestmark = pytest.mark.integration

BUILT_IN = ["hip-flexor-stretch", "lacrosse-ball-release", "desk-reset"]
OURS = sorted((Path(__file__).parent / "check").glob("*.yaml"))
MIN_RECOGNISED = 0.95  # issue 7: at least 95% of the speech cues on correct renders


@pytest.fixture(scope="module")
def voice_cache(tmp_path_factory):
    """A private voice cache for module-wide plans (conftest gives each test its own)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path_factory.mktemp("voice-cache")))
        yield


@pytest.fixture(scope="module")
def hip(voice_cache):
    """The built-in hip-flexor-stretch: its plan and its rendered samples."""
    plan = pipeline.plan("hip-flexor-stretch")
    return plan, np.concatenate(list(pipeline.render(plan)))


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.asarray(samples, "<i2").tobytes())
    return path


def ffmpeg_mp3(wav: Path, mp3: Path, *, to_pipe: bool = False) -> Path:
    """`wav` encoded with libmp3lame; through a pipe the file gets no Xing/LAME header."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame",
            "-b:a", "64k", "-f", "mp3"]
    if to_pipe:
        mp3.write_bytes(subprocess.run([*args, "pipe:1"], capture_output=True, check=True).stdout)
    else:
        subprocess.run([*args, str(mp3)], check=True)
    return mp3


def failures(report) -> str:
    rows = [f"{r.start_ms} {r.kind} {r.label!r}: {r.reason}" for r in report.rows if r.verdict == "FAIL"]
    measures = [f"{m.name} {m.value} {m.unit}" for m in report.measures if m.verdict == "FAIL"]
    return "\n".join([report.summary(), *rows, *measures])


def assert_cues_and_tones_pass(report):
    speech, tones = report.counts("speech"), report.counts("tone")
    assert speech["passed"] >= MIN_RECOGNISED * speech["total"], failures(report)
    assert tones["passed"] == tones["total"], failures(report)


# ---- correct renders pass --------------------------------------------------------------------


@pytest.mark.parametrize("ref", BUILT_IN + OURS, ids=lambda r: Path(r).stem)
def test_correct_renders_pass(ref):
    # The long built-ins without transcription (test_intelligibility_real measures them).
    report = check(pipeline.plan(str(ref)), transcribe=ref not in BUILT_IN)
    assert_cues_and_tones_pass(report)
    assert report.passed, failures(report)  # levels too: pipeline.render gives -16 LUFS, <= -1 dBTP


def test_an_mp3_with_its_lame_header_decodes_in_line_with_the_plan(hip, tmp_path):
    plan, samples = hip
    mp3 = ffmpeg_mp3(write_wav(tmp_path / "hip.wav", samples), tmp_path / "hip.mp3")
    report = check(plan, mp3, transcribe=False)
    assert report.measure("start offset").value == 0.0
    assert report.measure("start offset").verdict == "pass"
    assert report.measure("length vs plan").verdict == "pass"
    assert_cues_and_tones_pass(report)


def test_an_mp3_without_its_header_is_found_late_and_said_so(hip, tmp_path):
    plan, samples = hip
    mp3 = ffmpeg_mp3(write_wav(tmp_path / "hip.wav", samples), tmp_path / "piped.mp3", to_pipe=True)
    report = check(plan, mp3, transcribe=False)
    offset = report.measure("start offset")
    # LAME's encoder delay plus the decoder's, ~1105 samples, are left in
    assert offset.verdict == "FAIL" and 40 <= offset.value <= 60, failures(report)
    assert not report.passed
    assert f"offset {offset.value:+g} ms" in report.summary()


# ---- broken renders fail -----------------------------------------------------------------------


def test_a_cue_shifted_by_a_second_fails(hip, tmp_path):
    plan, samples = hip
    events = plan.timeline.events
    # a cue with room after it, so the shifted copy lands in silence
    i, cue = next((i, e) for i, e in enumerate(events[:-1])
                  if e.kind == "speech" and events[i + 1].start_ms - e.end_ms >= 1500)
    a, b = ms_to_samples(cue.start_ms), ms_to_samples(cue.end_ms)
    broken = samples.copy()
    broken[a:b] = 0
    broken[a + RATE:b + RATE] = samples[a:b]
    report = check(plan, write_wav(tmp_path / "shifted.wav", broken), transcribe=False)
    row = report.rows[i]
    assert (row.kind, row.start_ms, row.verdict) == ("speech", cue.start_ms, "FAIL"), failures(report)
    assert not report.passed
    others = [r for r in report.rows if r.kind == "speech" and r is not row]
    assert sum(r.verdict == "pass" for r in others) >= MIN_RECOGNISED * len(others), failures(report)


def test_a_missing_tone_fails(hip, tmp_path):
    plan, samples = hip
    i, tone = next((i, e) for i, e in enumerate(plan.timeline.events) if e.kind == "tone" and e.name == "start")
    broken = samples.copy()
    broken[ms_to_samples(tone.start_ms):ms_to_samples(tone.end_ms)] = 0
    report = check(plan, write_wav(tmp_path / "no-tone.wav", broken), transcribe=False)
    row = report.rows[i]
    assert (row.label, row.verdict) == ("start", "FAIL") and row.reason.startswith("missing"), failures(report)
    assert not report.passed
    assert sum(r.verdict == "FAIL" for r in report.rows if r.kind == "tone") == 1, failures(report)


def test_audio_10_db_too_loud_fails(hip, tmp_path):
    plan, samples = hip
    louder = np.clip(np.rint(samples * 10 ** (10 / 20)), -32768, 32767).astype(np.int16)
    report = check(plan, write_wav(tmp_path / "loud.wav", louder), transcribe=False)
    assert report.measure("integrated loudness").verdict == "FAIL"
    assert report.measure("integrated loudness").value > -16 + 1
    assert report.measure("true peak").verdict == "FAIL"
    assert report.measure("clipped samples").value > 0
    assert not report.passed


# ---- the command line ------------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voiceflex", *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_json_report_and_exit_status(tmp_path):
    routine = str(OURS[0])
    result = run("check", routine, "--json")
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert result.returncode == (0 if data["passed"] else 1), result.stderr
    plan = pipeline.plan(routine)
    assert [e["start_ms"] for e in data["events"]] == [e.start_ms for e in plan.timeline.events]
    assert data["audio"] is None and data["speech"]["total"] == sum(e.kind == "speech" for e in plan.timeline.events)


def test_cli_table_shows_a_broken_file_and_exits_1(tmp_path):
    routine = str(OURS[0])
    plan = pipeline.plan(routine)
    samples = np.concatenate(list(pipeline.render(plan)))
    wav = write_wav(tmp_path / "quiet.wav", np.zeros_like(samples))
    result = run("check", routine, "--audio", str(wav))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "silence where the cue should be" in result.stdout and "missing" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].endswith(": FAIL")


def test_cli_unreadable_audio_is_bad_input(tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_text("not audio")
    result = run("check", str(OURS[0]), "--audio", str(junk))
    assert result.returncode == 2
    assert result.stderr.startswith(f"voiceflex: {junk}: not an audio file") and "Traceback" not in result.stderr
