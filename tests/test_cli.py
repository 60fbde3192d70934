"""The command line as a user meets it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voiceflex.cli import main

CASES = Path(__file__).parent / "cases"
# overlap.yaml too: `validate` times speech with real lengths, as `plan` does.
ERROR_CASES = sorted(p for p in (CASES / "errors").glob("*.yaml") if p.name != "include-cycle-part.yaml")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voiceflex", *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda p: p.stem)
def test_validate_broken_files_exit_2_with_located_errors(path):
    result = run("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{path}:") or first.startswith(str(path.parent)), first
    file, line, col, message = first.split(":", 3)
    assert int(line) >= 1 and int(col) >= 1 and message.strip()


def test_validate_reports_all_files_and_carries_on(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("title: Good\nsteps:\n  - say: Hello.\n")
    result = run("validate", str(good), str(CASES / "errors/unknown-keys.yaml"), "no-such-routine")
    assert result.returncode == 2
    assert f"{good}: ok" in result.stdout
    assert "did you mean `hold`" in result.stdout
    assert "no routine file or built-in routine named `no-such-routine`" in result.stderr


@pytest.mark.parametrize("name", ["hip-flexor-stretch", "lacrosse-ball-release", "desk-reset"])
def test_builtins_validate(name):
    result = run("validate", name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_file_is_one_line_exit_2():
    result = run("validate", "/nonexistent.yaml")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("voiceflex: /nonexistent.yaml: no such routine file")


def test_bad_arguments_exit_2():
    assert run("plan").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


def test_schema_is_json():
    result = run("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "voiceflex routine"


def test_errors_on_a_terminal_show_the_line_and_a_caret(tmp_path, capsys, monkeypatch):
    f = tmp_path / "r.yaml"
    f.write_text("title: x\nsteps:\n  - pause: soon\n")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["validate", str(f)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{f}:3:12: `soon` is not a duration; write it like " + out[0].split("write it like ")[1]
    assert out[1] == "      - pause: soon"
    assert out[2] == "    " + " " * 11 + "^"


def test_clock_carries_into_the_minute():
    from voiceflex.cli_output import clock as _clock

    # Past an hour h:mm:ss.t, from the same function the plan's header uses.
    assert [_clock(ms) for ms in (0, 59_940, 59_960, 61_250, 3_599_960, 4_073_700)] == \
        ["0:00.0", "0:59.9", "1:00.0", "1:01.2", "1:00:00.0", "1:07:53.7"]
    # Error messages (overlaps) give milliseconds in the same form.
    from voiceflex.routine.durations import format_clock

    assert [format_clock(ms, 3) for ms in (6_000, 59_999, 4_073_700)] == ["0:06.000", "0:59.999", "1:07:53.700"]


def test_a_reader_leaving_early_is_no_error():
    # `voiceflex schema | head -c 10`: stdout's reader goes; voiceflex ends quietly with 0.
    proc = subprocess.Popen([sys.executable, "-m", "voiceflex", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0
    assert err == ""


def test_a_broken_pipe_that_is_not_stdout_is_an_internal_error(monkeypatch, capsys):
    # A pipe to a child process breaking is a bug to report, not a reader that left.
    import voiceflex.cli as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_list", broken)
    assert main(["list"]) == 1
    assert "internal error: BrokenPipeError" in capsys.readouterr().err


def test_a_bitrate_too_low_for_the_peak_limit_is_refused_before_any_work(tmp_path):
    result = run("export", "desk-reset", "-o", str(tmp_path / "out"), "--bitrate", "16k")
    assert result.returncode == 2
    assert "too low" in result.stderr and "64k is the default" in result.stderr
    assert not (tmp_path / "out").exists()
