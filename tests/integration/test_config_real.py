"""Choosing engine, voice and rate without editing routines, through the real CLI and engines.

Each test has its own config folder (VOICEFLEX_CONFIG_DIR) and voice cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CASES = Path(__file__).parent.parent / "cases"
ROUTINE = """\
title: Choices
language: en-gb
voice: {engine: pyttsx3, id: gmw/en-GB-x-rp}
steps:
  - say: Kneel on your left knee and breathe out slowly.
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A config folder (empty: no config.toml yet) and a routine file in it."""
    monkeypatch.setenv("VOICEFLEX_CONFIG_DIR", str(tmp_path))
    (tmp_path / "r.yaml").write_text(ROUTINE)
    return tmp_path


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "voiceflex", *args], capture_output=True, text=True,
                            timeout=300, env=os.environ)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def speech_ms(home: Path, *args: str) -> int:
    result = run("plan", "--json", str(home / "r.yaml"), *args)
    assert result.returncode == 0, result.stderr
    [cue] = [e for e in json.loads(result.stdout)["events"] if e["kind"] == "speech"]
    return cue["end_ms"] - cue["start_ms"]


def test_rate_from_the_config_file_and_the_command_line_over_it(home):
    routine_rate = speech_ms(home)  # the routine sets no rate: 160
    (home / "config.toml").write_text("rate = 100\n")
    slow = speech_ms(home)
    fast = speech_ms(home, "--rate", "300")
    assert fast < routine_rate < slow, (fast, routine_rate, slow)
    # The routine's own rate beats the config file's.
    (home / "r.yaml").write_text(ROUTINE.replace("}", ", rate: 160}", 1))
    assert speech_ms(home) == routine_rate


def test_config_shows_every_setting_and_where_it_comes_from(home):
    (home / "config.toml").write_text('rate = 120\nengine = "espeak-ng"\nvoice = "gmw/en-us"\nbitrate = "96k"\n')
    result = run("config", str(home / "r.yaml"), "--rate", "200")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["engine"] == ["pyttsx3", f"routine {home / 'r.yaml'}"]
    # The config's voice belongs to the config's engine, which the routine overrode.
    assert rows["voice"] == ["gmw/en-gb-x-rp", f"routine {home / 'r.yaml'}"]
    assert rows["rate"] == ["200", "command line (--rate)"]
    assert rows["bitrate"] == ["96k", f"config {home / 'config.toml'}:4:1"]
    assert rows["output"] == ["audio", "default"]
    # --engine drops the routine's voice id and takes the engine's voice for en-gb.
    result = run("config", str(home / "r.yaml"), "--engine", "espeak-ng")
    assert "gmw/en (for en-gb)" in result.stdout, result.stdout


def test_an_engine_from_the_command_line_drops_the_routines_voice(home):
    # The routine's pyttsx3 voice id is unknown; with --engine espeak-ng it no longer applies.
    (home / "r.yaml").write_text(ROUTINE.replace("gmw/en-GB-x-rp", "english-scottish"))
    assert run("validate", str(home / "r.yaml")).returncode == 2
    result = run("validate", str(home / "r.yaml"), "--engine", "espeak-ng")
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_finds_what_plan_finds(home):
    overlap = CASES / "errors/overlap.yaml"
    result = run("validate", str(overlap))
    assert result.returncode == 2
    assert result.stdout.startswith(f"{overlap}:4:14: ") and "runs into" in result.stdout
    assert run("validate", "--no-voice", str(overlap)).returncode == 0

    (home / "scottish.yaml").write_text("title: x\nvoice: {id: english-scottish}\nsteps:\n  - say: Hi.\n")
    (home / "klingon.yaml").write_text("title: x\nlanguage: klingon\nsteps:\n  - say: Hi.\n")
    (home / "end.yaml").write_text("title: x\nsteps:\n  - hold: 10s\n    cues: [{at: 10s, say: Done now.}]\n"
                                   "  - say: Next.\n")
    result = run("validate", str(home / "scottish.yaml"), str(home / "klingon.yaml"), str(home / "end.yaml"))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f'{home / "scottish.yaml"}:2:13: pyttsx3 has no voice "english-scottish"; `voiceflex voices` lists them',
        f'{home / "klingon.yaml"}:2:11: pyttsx3 has no voice for language "klingon"; `voiceflex voices` lists them',
        result.stdout.splitlines()[2]]
    assert result.stdout.splitlines()[2].startswith(f'{home / "end.yaml"}:4:27: "Done now." lasts ')
    # Each one is what `plan` refuses too.
    for name in ("scottish", "klingon", "end"):
        assert run("plan", str(home / f"{name}.yaml")).returncode == 2


def test_validate_honours_the_config_and_the_flags(home):
    (home / "config.toml").write_text('voice = "nope"\n')
    result = run("validate", str(CASES / "timeline/hold.yaml"))
    assert result.returncode == 2
    assert result.stdout.startswith(f"{home / 'config.toml'}:1:1: pyttsx3 has no voice \"nope\"")
    result = run("validate", "--voice", "gmw/en-us", str(CASES / "timeline/hold.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("validate", "--voice", "nope", str(CASES / "timeline/hold.yaml"))
    assert result.returncode == 2 and result.stderr.startswith('voiceflex: pyttsx3 has no voice "nope"')


def test_structural_errors_come_before_any_synthesis(home):
    cache = home / "cache"
    (home / "broken.yaml").write_text("title: x\nsteps:\n  - say: Words to speak.\n  - pause: soon\n")
    result = subprocess.run([sys.executable, "-m", "voiceflex", "validate", str(home / "broken.yaml")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "VOICEFLEX_CACHE_DIR": str(cache)})
    assert result.returncode == 2 and f"{home / 'broken.yaml'}:4:12:" in result.stdout
    assert not any(p.is_file() for p in cache.rglob("*")), "nothing was synthesized"


def test_validate_a_folder(home):
    (home / "good.yml").write_text("title: Good\nsteps:\n  - say: Hello.\n")
    (home / "parts").mkdir()
    (home / "parts/ignored.yaml").write_text("- not a routine\n")
    (home / "notes.txt").write_text("not a routine")
    result = run("validate", str(home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{home / 'good.yml'}: ok (1 chapter, 1 spoken cue)",
                                          f"{home / 'r.yaml'}: ok (1 chapter, 1 spoken cue)"]
    result = run("validate", str(home / "parts" / ".."), str(home / "parts"))
    assert result.returncode == 2  # parts/ holds a list, not a routine
    empty = home / "empty"
    empty.mkdir()
    result = run("validate", str(empty))
    assert result.returncode == 2 and "no .yaml or .yml files" in result.stderr


def test_a_toml_syntax_error_is_located_exit_2(home):
    (home / "config.toml").write_text("rate = 120\nengine = espeak-ng\n")
    for command in (["plan", "desk-reset"], ["config"], ["validate", "--no-voice", "desk-reset"]):
        result = run(*command)
        assert result.returncode == 2, command
        assert result.stderr.startswith(f"{home / 'config.toml'}:2:10: not valid TOML: invalid value"), result.stderr


@pytest.mark.parametrize("args", [
    ["export", "desk-reset", "--bitrate", "²k"],
    ["export", "desk-reset", "--bitrate", "①"],
    ["export", "desk-reset", "--bitrate", "9" * 5000],
    ["plan", "desk-reset", "--rate", "²"],
    ["plan", "desk-reset", "--rate", "9" * 5000],
    ["plan", "desk-reset", "--engine", "festival"],
    ["export", "desk-reset", "--format", "wav", "--bitrate", "64k"],
])
def test_bad_arguments_are_usage_errors(args, home):
    result = run(*args, "-o", str(home / "out")) if args[0] == "export" else run(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr) < 1000 and "internal error" not in result.stderr
    assert not (home / "out").exists()


@pytest.mark.parametrize("start", ["²", "①", "9" * 5000])
def test_play_from_a_chapter_number_that_is_not_one(start, home):
    result = run("play", str(home / "r.yaml"), "--from", start)
    assert result.returncode == 2, result.stderr
    assert "is not a chapter of this routine" in result.stderr and len(result.stderr) < 500


def test_export_output_and_bitrate_from_the_config(home):
    (home / "config.toml").write_text('output = "exports"\nbitrate = "96k"\n')
    result = run("export", str(home / "r.yaml"))
    assert result.returncode == 0, result.stderr
    out = home / "exports" / "r.mp3"
    assert result.stdout.strip() == str(out)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=bit_rate",
                            "-of", "csv=p=0", str(out)], capture_output=True, text=True, check=True)
    assert int(probe.stdout.split()[0]) == 96_000
    # A config bitrate does not apply to WAV; --bitrate with WAV is refused above.
    result = run("export", str(home / "r.yaml"), "--format", "wav", "-o", str(home / "wav"))
    assert result.returncode == 0, result.stderr
    assert (home / "wav" / "r.wav").is_file()


def test_output_naming_an_existing_file_is_a_usage_error(home):
    target = home / "taken.mp3"
    target.write_bytes(b"mine")
    result = run("export", str(home / "r.yaml"), "-o", str(target))
    assert result.returncode == 2
    assert result.stderr.startswith(f"voiceflex: -o names the file {target}, not a folder")
    result = run("export", str(home / "r.yaml"), "-o", str(target / "inside"))
    assert result.returncode == 2 and f"-o names the file {target}, not a folder" in result.stderr
    (home / "config.toml").write_text(f'output = "{target}"\n')
    result = run("export", str(home / "r.yaml"))
    assert result.returncode == 2 and f"`output` (config {home / 'config.toml'}:1:1)" in result.stderr
    assert target.read_bytes() == b"mine"


def test_plan_counts_chapters_in_words_and_times_past_an_hour(home):
    result = run("plan", str(home / "r.yaml"))
    assert result.stdout.splitlines()[0].startswith("Choices: 0:0") and result.stdout.splitlines()[0].endswith(
        ", 1 chapter")
    (home / "long.yaml").write_text("title: Long\nsteps:\n  - name: Wait\n    pause: 1h7m53s\n"
                                    "  - name: End\n    say: Done.\n")
    result = run("plan", str(home / "long.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Long: 1:07:5") and lines[0].endswith(", 2 chapters")
    assert lines[3].split()[2:] == ["1:07:53.0", lines[0].split()[1].rstrip(",")], lines


def test_voices_filter_by_language_and_mark_the_default(home):
    result = run("voices", "--engine", "espeak-ng", "--language", "en-gb")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert rows and all("en" in row for row in rows)
    [default] = [row for row in rows if row.endswith("default for en-gb")]
    assert default.split()[0] == "gmw/en"
    result = run("voices")
    [default] = [row for row in result.stdout.splitlines() if row.endswith("default for en-us")]
    assert default.split()[0] == "gmw/en-us"
    # The config's voice is the default a routine gets.
    (home / "config.toml").write_text('voice = "gmw/en-GB-x-rp"\n')
    [default] = [row for row in run("voices").stdout.splitlines() if row.endswith("default for en-us")]
    assert default.split()[0].lower() == "gmw/en-gb-x-rp"
    result = run("voices", "--language", "klingon")
    assert result.returncode == 2 and 'no voice for language "klingon"' in result.stderr
