"""The piper engine with the real bundled voice, and reproducible rendering by every engine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_check_real import MIN_RECOGNISED
from test_export_real import ebur128

from voiceflex.routine.model import VoiceSettings
from voiceflex.voice import get_engine, list_voices, synthesize
from voiceflex.voice.piper_engine import QUIET

pytestmark = pytest.mark.integration

ROUTINES = Path(__file__).resolve().parents[2] / "src" / "voiceflex" / "builtin_routines"
SRC = str(ROUTINES.parents[1])
CUES = ["Breathe in", "Three.", "Hold it. Breathe out slowly.", "Kneel on your left knee."]
PIPER = VoiceSettings(engine="piper")


def with_engine(tmp_path: Path, name: str, engine: str) -> Path:
    """A copy of the built-in routine `name` (and the parts it includes) spoken by `engine`."""
    folder = tmp_path / f"routines-{engine}"
    if not folder.exists():
        shutil.copytree(ROUTINES, folder)
    path = folder / f"{name}.yaml"
    path.write_text((ROUTINES / f"{name}.yaml").read_text() + f"voice:\n  engine: {engine}\n")
    return path


def voiceflex(*args: str, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, with its own voice cache."""
    environ = {**os.environ, "PYTHONPATH": SRC, "VOICEFLEX_CACHE_DIR": str(cache), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "voiceflex", *args], capture_output=True, text=True,
                            env=environ, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_the_bundled_voice_is_listed_with_its_language():
    [joe] = [v for v in list_voices("piper") if v.id == "en_US-joe-medium"]
    assert joe.languages[0] == "en-us"


def test_real_cues_are_speech_trimmed_to_their_ends():
    clips = synthesize(CUES, PIPER)
    for text, clip in clips.items():
        assert clip.rate == 22050
        assert 0.3 * 1000 <= clip.ms <= 4 * 1000, text
        assert abs(int(clip.samples[0])) > QUIET and abs(int(clip.samples[-1])) > QUIET
        assert np.abs(clip.samples).max() > 3000
    # Two sentences take longer than either alone plus the pause between them.
    assert clips["Hold it. Breathe out slowly."].ms > clips["Breathe in"].ms + 350


def test_rate_changes_the_length_as_calibrated():
    engine = get_engine("piper")
    lengths = {rate: dict(engine.render(CUES[3:], "en_US-joe-medium", rate))[CUES[3]].ms for rate in (80, 160, 320)}
    assert lengths[80] > 1.6 * lengths[160] and lengths[320] < 0.7 * lengths[160]


@pytest.mark.parametrize("engine_name", ["piper", "pyttsx3", "espeak-ng"])
def test_same_bytes_whatever_was_spoken_before(engine_name):
    engine = get_engine(engine_name)
    voice = engine.voices()[0].id if engine_name == "piper" else "gmw/en-us"
    forward = {t: c.samples.tobytes() for t, c in engine.render(CUES, voice, 160, workers=2)}
    backward = {t: c.samples.tobytes() for t, c in engine.render(CUES[::-1], voice, 160, workers=1)}
    assert forward == backward


@pytest.mark.parametrize("engine_name", ["pyttsx3", "espeak-ng", "piper"])
def test_two_empty_caches_give_the_same_plan_and_wav(engine_name, tmp_path):
    routine = str(with_engine(tmp_path, "desk-reset", engine_name))
    runs = []
    for n in (1, 2):
        cache, out = tmp_path / f"cache{n}", tmp_path / f"out{n}"
        plan = voiceflex("plan", routine, "--json", cache=cache)
        export = voiceflex("export", routine, "--format", "wav", "-o", str(out), cache=cache)
        assert plan.returncode == 0 and export.returncode == 0, plan.stderr + export.stderr
        [wav] = out.glob("*.wav")
        runs.append((json.loads(plan.stdout), hashlib.sha256(wav.read_bytes()).hexdigest()))
    assert runs[0] == runs[1]


def test_a_builtin_exported_with_piper_is_levelled_and_passes_check(tmp_path):
    routine = str(with_engine(tmp_path, "hip-flexor-stretch", "piper"))
    cache = tmp_path / "cache"
    export = voiceflex("export", routine, "-o", str(tmp_path), cache=cache)
    assert export.returncode == 0, export.stderr
    mp3 = Path(export.stdout.strip().splitlines()[-1])
    loudness, peak = ebur128(mp3)
    assert abs(loudness + 16) <= 1 and peak <= -1
    # The bar of test_check_real for a correct render (issue 7): 95 % of the
    # cues recognised by the grammar, every tone, every level.  pocketsphinx's
    # English model mishears 1 of hip-flexor-stretch's 64 cues in Joe's voice
    # ("Round 2 of 2. Settle into the stretch."); desk-reset and
    # lacrosse-ball-release pass whole.
    checked = voiceflex("check", routine, "--audio", str(mp3), "--json", cache=cache)
    report = json.loads(checked.stdout)
    speech = report["speech"]
    assert speech["passed"] >= MIN_RECOGNISED * speech["total"], checked.stdout[-2000:]
    assert report["tones"]["passed"] == report["tones"]["total"]
    assert all(m["verdict"] == "pass" for m in report["measures"]), report["measures"]


def test_without_piper_installed_one_line_says_how_to_get_it(tmp_path):
    # As on a machine without the extra.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # None in sys.modules: the import system reports the module as absent.
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['piper'] = None\n")
    routine = str(with_engine(tmp_path, "desk-reset", "piper"))
    result = voiceflex("plan", routine, cache=tmp_path / "cache",
                       env={"PYTHONPATH": f"{blocker}{os.pathsep}{SRC}"})
    assert result.returncode != 0
    assert "piper-tts is not installed" in result.stderr and "voiceflex[piper]" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
