"""Hostile input, faults and safety without real engines: limits, worker failures, caches, names, network.

The real-process counterparts (signals mid-export, full disks, four exports
at once, real espeak and ffmpeg) are in integration/test_reliability_real.py;
docs/reliability.md lists which test shows which guarantee.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from helpers.fakes import FakeEngine, fake_clip, fake_ms

from voiceflex import pipeline
from voiceflex.cli import main
from voiceflex.errors import EngineError, RoutineError
from voiceflex.routine.model import VoiceSettings
from voiceflex.voice import Clip, VoiceCache, VoiceInfo, espeak_cli, synthesis, synthesize
from voiceflex.voice.workers import WorkerPool

SRC = Path(__file__).resolve().parent.parent / "src"


def at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """(line, column), from 1, of the `nth` occurrence of `needle` in `text`."""
    index = -1
    for _ in range(nth + 1):
        index = text.index(needle, index + 1)
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


# ---- limits: each refused at its line, in bounded memory -----------------------------

MEMORY_BOUND_MB = 64  # Python heap while validating any of the files below (tracemalloc peak)
SPARSE = object()  # marks a file made sparse: its size, no data on disk


@dataclass
class Limit:
    """Files of one case, the file to validate, and the error expected: (file, line, column, words).

    `words` are part of the message; "^words" its start."""

    files: dict[str, str | tuple[object, int]]
    expect: tuple[str, int, int | None, str]
    main: str = "r.yaml"
    extra: list[str] = field(default_factory=list)  # symbolic links to make, as "link->target"


def _alias_bomb() -> Limit:
    lines = ["title: Laughs", "a0: &a0 [" + ", ".join(["{say: ha}"] * 9) + "]"]
    for k in range(1, 7):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    lines.append("steps: *a6")  # without the limit the loader would walk 9**7 steps
    text = "\n".join(lines) + "\n"
    # {say: ha} is 3 values, a3 holds 20,503, a4 would hold 184,528.  The values before a4
    # come to 23,069, so the 4th *a3 takes the document past 100,000: refused right there.
    return Limit({"r.yaml": text}, ("r.yaml", *at(text, "*a3", 3), "expands to more than 100,000 values"))


def _plain_values() -> Limit:
    text = "title: Many\nsteps:\n" + "  - say: x\n" * 40_000
    # 3 values before the steps, then 3 a step: the 33,333rd step's text is value 100,001.
    return Limit({"r.yaml": text}, ("r.yaml", 2 + 33_333, 10, "holds more than 100,000 values"))


def _nested(kind_line: str, levels: int, leaf: str) -> str:
    out, indent = ["title: Deep", "steps:"], "  "
    for _ in range(levels):
        out += [f"{indent}- {kind_line}", f"{indent}  steps:"]
        indent += "  "
    out.append(f"{indent}- {leaf}")
    return "\n".join(out) + "\n"


def _include_chain(length: int) -> Limit:
    files = {f"f{k}.yaml": f"title: Part {k}\nsteps:\n  - include: f{k + 1}.yaml\n" for k in range(length)}
    files[f"f{length}.yaml"] = "- say: The end.\n"
    # The routine's own steps are level 0; the include in f16.yaml would be the 17th level.
    return Limit(files, ("f16.yaml", 3, 5, "nested more than 16 levels"), main="f0.yaml")


_SIX_HOURS_SUM = "title: Long\nsteps:\n" + "  - pause: 1h\n" * 7
_TEXT_501 = "title: Wordy\nsteps:\n  - say: Breathe.\n  - say: " + "a" * 501 + "\n"
_SIDE_FILL = ("title: Sides\nsteps:\n  - sides: [" + "l" * 300 + ", right]\n    steps:\n"
              "      - say: Now the {side} side, {side}.\n")
_SIDE_LONG = "title: Sides\nsteps:\n  - sides: [left, " + "r" * 501 + "]\n    steps:\n      - say: Go.\n"
_SIDE_NUL = 'title: Sides\nsteps:\n  - sides: [left, "ri\\0ght"]\n    steps:\n      - say: "{side}"\n'
_EVENTS = ("title: Ticks\nsteps:\n  - tone: start\n  - repeat: 1000\n    steps:\n      - repeat: 201\n"
           "        steps:\n          - tone: tick\n")

LIMITS: dict[str, Limit] = {
    "alias-bomb": _alias_bomb(),
    "many-values-without-aliases": _plain_values(),
    "yaml-nesting": Limit({"r.yaml": "title: x\nsteps:\n" + "".join("  " * i + "- \n" for i in range(1, 80))},
                         ("r.yaml", 66, 129, "nested more than 64 levels")),
    "flow-nesting": Limit({"r.yaml": "[" * 100_000}, ("r.yaml", 1, None, "YAML syntax error")),
    "duration-over-6h": Limit({"r.yaml": "title: x\nsteps:\n  - hold: 7h\n"},
                              ("r.yaml", 3, 11, "cannot exceed 6 hours")),
    "routine-over-6h": Limit({"r.yaml": _SIX_HOURS_SUM},
                             ("r.yaml", 9, 5, "passes the 6-hour limit here")),
    "repeats-over-6h": Limit({"r.yaml": _nested("repeat: 1000", 2, "pause: 1s")},
                             ("r.yaml", 3, 5, "longer than 6 hours")),
    "repeat-cap": Limit({"r.yaml": "title: x\nsteps:\n  - repeat: 1001\n    steps:\n      - say: Again.\n"},
                        ("r.yaml", 3, 13, "must be from 1 to 1000")),
    "breathe-cap": Limit({"r.yaml": "title: x\nsteps:\n  - breathe: {in: 1s, out: 1s, cycles: 1001}\n"},
                         ("r.yaml", 3, 40, "must be from 1 to 1000")),
    "countdown-cap": Limit({"r.yaml": "title: x\nsteps:\n  - hold: 2h\n    countdown: 3601\n"},
                           ("r.yaml", 4, 16, "must be from 1 to 3600")),
    "nesting-cap": Limit({"r.yaml": _nested("repeat: 1", 17, "say: deep")},
                         ("r.yaml", 3 + 2 * 16, 5 + 2 * 16, "nested more than 16 levels")),
    "include-depth": _include_chain(18),
    "events-cap": Limit({"r.yaml": _EVENTS}, ("r.yaml", 4, 5, "more than 200,000 cues and tones")),
    "file-size": Limit({"r.yaml": (SPARSE, 200_000_000)},
                       ("r.yaml", 1, 1, "file is 200,000,000 bytes; routine files are limited to 1,000,000")),
    "included-file-size": Limit({"r.yaml": "title: x\nsteps:\n  - include: big.yaml\n",
                                 "big.yaml": (SPARSE, 200_000_000)},
                                ("big.yaml", 1, 1, "file is 200,000,000 bytes")),
    "text-length": Limit({"r.yaml": _TEXT_501}, ("r.yaml", 4, 10, "^text is 501 characters; a cue may have at most 500")),
    "filled-text-length": Limit({"r.yaml": _SIDE_FILL}, ("r.yaml", *at(_SIDE_FILL, "Now"),
                                                         "with `{side}` filled in this text is 616 characters")),
    "side-name-length": Limit({"r.yaml": _SIDE_LONG}, ("r.yaml", *at(_SIDE_LONG, "rrr"), "at most 500")),
    "side-name-control": Limit({"r.yaml": _SIDE_NUL}, ("r.yaml", *at(_SIDE_NUL, '"ri'), "control character U+0000")),
    "voice-rate": Limit({"r.yaml": "title: x\nvoice: {rate: 401}\nsteps:\n  - say: Hi.\n"},
                        ("r.yaml", 2, 15, "must be from 80 to 400")),
    "include-outside": Limit({"r/r.yaml": "title: x\nsteps:\n  - include: ../secret.yaml\n",
                              "secret.yaml": "- say: secret\n"},
                             ("r/r.yaml", 3, 14, "points outside the routine's folder"), main="r/r.yaml"),
    "include-through-symlinked-folder": Limit(
        {"r/r.yaml": "title: x\nsteps:\n  - include: parts/secret.yaml\n", "elsewhere/secret.yaml": "- say: s\n"},
        ("r/r.yaml", 3, 14, "points outside the routine's folder"), main="r/r.yaml",
        extra=["r/parts->../elsewhere"]),
    "include-absolute": Limit({"r.yaml": "title: x\nsteps:\n  - include: /etc/hostname\n"},
                              ("r.yaml", 3, 14, "must be a path relative to this file")),
    "include-control-characters": Limit({"r.yaml": 'title: x\nsteps:\n  - say: Hi.\n  - include: "a\\0b.yaml"\n'},
                                        ("r.yaml", 4, 14, "cannot contain control characters")),
    "include-name-too-long": Limit({"r.yaml": "title: x\nsteps:\n  - include: " + "x" * 5000 + ".yaml\n"},
                                   ("r.yaml", 3, 14, "File name too long")),
}


def _says(message: str, words: str) -> bool:
    """Whether `message` contains `words` (starts with them, for "^words")."""
    return message.startswith(words[1:]) if words.startswith("^") else words in message


def _write_case(folder: Path, case: Limit) -> Path:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            with open(path, "wb") as f:
                f.truncate(content[1])  # sparse: no data written, nothing read unless asked
        else:
            path.write_text(content, encoding="utf-8")
    for spec in case.extra:
        link, target = spec.split("->")
        (folder / link).symlink_to(target)
    return folder / case.main


# Runs in a child process: a limit that stopped holding must fail a test, not take the
# test run down with it, so memory is capped and a hang ends at the parent's timeout.
_MEASURE = """
import json, resource, sys, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY))
from voiceflex import pipeline
from voiceflex.errors import RoutineError
out = {}
for path in sys.argv[1:]:
    tracemalloc.start()
    try:
        timeline = pipeline.validate(path)
        result = {"ok": len(timeline.events)}
    except RoutineError as exc:
        result = {"errors": [[d.location.file, d.location.line, d.location.column, d.message]
                             for d in exc.diagnostics]}
    except BaseException as exc:
        result = {"crash": repr(exc)[:500]}
    result["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    out[path] = result
print(json.dumps(out))
"""


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


@pytest.fixture(scope="module")
def limit_results(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    """Per case: its folder, the file validated, and what validating it gave (errors, peak memory)."""
    cases = {}
    for name, case in LIMITS.items():
        folder = tmp_path_factory.mktemp(name)
        cases[name] = (folder, _write_case(folder, case))
    run = subprocess.run([sys.executable, "-c", _MEASURE, *(str(p) for _, p in cases.values())],
                         capture_output=True, text=True, timeout=300, env=_child_env())
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    return {name: (folder, path, measured[str(path)]) for name, (folder, path) in cases.items()}


@pytest.mark.parametrize("name", list(LIMITS))
def test_limit_is_a_located_error_in_bounded_memory(name, limit_results):
    folder, _, result = limit_results[name]
    assert "crash" not in result, result["crash"]
    assert "errors" in result, f"accepted: {result}"
    file, line, column, words = LIMITS[name].expect
    match = [e for e in result["errors"] if e[0] == str(folder / file) and _says(e[3], words)]
    assert match, result["errors"]
    assert match[0][1] == line, result["errors"]
    if column is not None:
        assert match[0][2] == column, result["errors"]
    for _, _, _, message in result["errors"]:
        assert "\n" not in message
    assert result["peak_mb"] < MEMORY_BOUND_MB, f"{result['peak_mb']:.1f} MB"


def _limit_address_space(megabytes: int):
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, resource.RLIM_INFINITY))

    return limit


def test_every_limit_through_validate_exits_2_without_a_traceback(limit_results):
    paths = [str(path) for _, path, _ in limit_results.values()]
    result = subprocess.run([sys.executable, "-m", "voiceflex", "validate", *paths], capture_output=True,
                            text=True, timeout=300, env=_child_env(), preexec_fn=_limit_address_space(1024))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr
    lines = result.stdout.splitlines()
    for name, (folder, _, _) in limit_results.items():
        file, line, _, words = LIMITS[name].expect
        prefix = f"{folder / file}:{line}:"
        assert any(out.startswith(prefix) and _says(out.split(": ", 1)[1], words) for out in lines), (name, prefix)


def test_exactly_the_documented_number_of_events_is_allowed(tmp_path):
    # 1 start tone + 1000 x 199 ticks = 199,001 events: under 200,000, so accepted
    # (the check before expanding repeats must not refuse what the real count allows).
    path = tmp_path / "r.yaml"
    path.write_text(_EVENTS.replace("201", "199"))
    timeline = pipeline.validate(str(path))
    assert len(timeline.events) == 199_001


def test_a_huge_file_is_refused_without_reading_it(tmp_path):
    """3 GB (sparse) under a 512 MB address-space limit: refused from its size, not read."""
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(3_000_000_000)
    result = subprocess.run([sys.executable, "-m", "voiceflex", "validate", str(big)], capture_output=True,
                            text=True, timeout=120, env=_child_env(), preexec_fn=_limit_address_space(512))
    assert result.returncode == 2, result.stderr
    assert result.stdout == (f"{big}:1:1: file is 3,000,000,000 bytes; "
                             "routine files are limited to 1,000,000 bytes\n")


# ---- a speech worker that crashes or hangs: retried once, else the cue and its line ---------

FLAKY_BACKEND = "helpers.reliability_worker:FlakyBackend"  # see helpers/reliability_worker.py


class WorkerEngine(FakeEngine):
    """The fake engine's voices; its cues spoken by FlakyBackend in real worker processes."""

    name = "flaky"

    def __init__(self, timeout: float = 10.0):
        super().__init__()
        self.timeout = timeout

    def render(self, texts, voice, rate, *, workers=1) -> Iterator[tuple[str, Clip]]:
        with WorkerPool(FLAKY_BACKEND, workers=workers, timeout=self.timeout) as pool:
            for text, (frames, sample_rate) in pool.render(texts, voice, rate):
                yield text, Clip(np.frombuffer(frames, "<i2").astype(np.int16), sample_rate)


FLAKY = """\
title: Flaky
steps:
  - say: Settle in.
  - sides: [left, right]
    steps:
      - hold: 20s
        say: Hold the {side} side.
        halfway: Now {side} crashes.
  - say: Do not hang up.
"""


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAKY_MARKER", str(tmp_path / "wobbled"))
    path = tmp_path / "flaky.yaml"
    return path


def test_a_cue_that_kills_its_worker_twice_is_named_with_its_line(flaky):
    flaky.write_text(FLAKY)
    with pytest.raises(EngineError) as raised:
        pipeline.plan(str(flaky), engine=WorkerEngine())
    line, column = at(FLAKY, "Now {side} crashes.")
    # Two workers speak at once: either side's cue may be the one that fails first.
    assert re.fullmatch(rf'{re.escape(str(flaky))}:{line}:{column}: could not speak "Now (left|right) crashes\.": '
                        "the speech process exited with status 3", str(raised.value)), str(raised.value)


def test_a_hung_cue_is_named_with_its_line(flaky):
    text = FLAKY.replace("crashes", "rests")
    flaky.write_text(text)
    with pytest.raises(EngineError) as raised:
        pipeline.plan(str(flaky), engine=WorkerEngine(timeout=1.0))
    line, column = at(text, "Do not hang up.")
    assert str(raised.value) == (f'{flaky}:{line}:{column}: could not speak "Do not hang up.": '
                                 "no answer within 1 s")


def test_a_worker_that_dies_once_is_replaced_and_the_cue_spoken(flaky):
    text = FLAKY.replace("crashes", "wobbles").replace("Do not hang up.", "Done.")
    flaky.write_text(text)
    plan = pipeline.plan(str(flaky), engine=WorkerEngine())
    spoken = {e.text for e in plan.timeline.events if e.kind == "speech"}
    assert {"Now left wobbles.", "Now right wobbles."} <= spoken
    assert plan.clips["Now left wobbles."].ms == fake_ms("Now left wobbles.")
    assert Path(os.environ["FLAKY_MARKER"]).exists()  # it did die once


def test_the_cli_reports_the_failed_cue_in_one_line_and_writes_nothing(flaky, monkeypatch, capsys, tmp_path):
    flaky.write_text(FLAKY)
    monkeypatch.setitem(synthesis.ENGINES, "pyttsx3", WorkerEngine)
    out = tmp_path / "out"
    assert main(["export", str(flaky), "-o", str(out), "--format", "wav"]) == 1
    err = capsys.readouterr().err
    line, column = at(FLAKY, "Now {side} crashes.")
    assert re.fullmatch(rf'voiceflex: {re.escape(str(flaky))}:{line}:{column}: could not speak '
                        '"Now (left|right) crashes\\.": the speech process exited with status 3\n', err), err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_worker_that_died_between_cues_is_replaced():
    # Killed while idle (by the OOM killer, say): the next cue sent to it must not
    # end the export with a BrokenPipeError, which the CLI would take for a closed stdout.
    with WorkerPool(FLAKY_BACKEND, workers=1) as pool:
        assert [t for t, _ in pool.render(["one"], "v", 160)] == ["one"]
        (victim,) = [w.process for w in pool._live]
        victim.kill()
        victim.wait()
        assert [t for t, _ in pool.render(["two", "three"], "v", 160)] == ["two", "three"]
        assert victim not in [w.process for w in pool._live]


def test_the_espeak_program_failing_twice_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(espeak_cli.shutil, "which", lambda name: "/usr/bin/espeak-ng")

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, b"", b"espeak-ng: out of memory\n")

    monkeypatch.setattr(espeak_cli.subprocess, "run", failing)
    engine = espeak_cli.EspeakCliEngine()
    monkeypatch.setattr(engine, "voices", lambda: [VoiceInfo("gmw/en-us", "English", ("en-us",))])
    monkeypatch.setattr(type(engine), "version", property(lambda self: "test"))
    text = "title: x\nvoice: {engine: espeak-ng}\nsteps:\n  - pause: 1s\n  - say: Breathe out.\n"
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(EngineError) as raised:
        pipeline.plan(str(path), engine=engine)
    assert str(raised.value) == (f'{path}:5:10: could not speak "Breathe out.": '
                                 "espeak-ng exited with status 1 (espeak-ng: out of memory)")


def test_an_engine_that_returns_nothing_for_a_cue_is_named_with_its_line(tmp_path):
    class Forgetful(FakeEngine):
        def render(self, texts, voice, rate, *, workers=1):
            yield from ((t, c) for t, c in super().render(texts, voice, rate) if t != "Forgotten.")

    path = tmp_path / "r.yaml"
    path.write_text("title: x\nsteps:\n  - say: Remembered.\n  - say: Forgotten.\n")
    with pytest.raises(EngineError, match=rf'^{path}:4:10: fake returned no audio for "Forgotten\."$'):
        pipeline.plan(str(path), engine=Forgetful())


# ---- the voice cache: first rendering wins, leftovers of killed writers are swept -------------

SETTINGS = VoiceSettings()


class OtherEngine(FakeEngine):
    """Renders every text a little longer than FakeEngine: pyttsx3 in another process."""

    def __init__(self, meanwhile=None):
        super().__init__()
        self.meanwhile = meanwhile

    def render(self, texts, voice, rate, *, workers=1):
        for text in texts:
            if self.meanwhile is not None:
                self.meanwhile()  # the other process stores its rendering first
            yield text, fake_clip(text + " and a bit")


def test_a_rendering_stored_meanwhile_by_another_process_is_the_one_used(tmp_path):
    cache = VoiceCache(tmp_path)
    first = {}
    other = OtherEngine(meanwhile=lambda: first.update(synthesize(["Hold."], SETTINGS, engine=FakeEngine(),
                                                                  cache=cache)))
    mine = synthesize(["Hold."], SETTINGS, engine=other, cache=cache)
    assert np.array_equal(mine["Hold."].samples, first["Hold."].samples)
    assert mine["Hold."].ms == fake_ms("Hold.")
    stored = cache.get(VoiceCache.key("Hold.", "fake", "1", "fake/en-us", SETTINGS.rate))
    assert np.array_equal(stored.samples, first["Hold."].samples)


def test_a_damaged_entry_in_the_way_is_replaced(tmp_path):
    cache = VoiceCache(tmp_path)
    cache.put("k", fake_clip("old"))
    cache.path("k").write_bytes(b"VFXCLIP\0 torn")
    stored = cache.put("k", fake_clip("new"))
    assert np.array_equal(stored.samples, fake_clip("new").samples)
    assert np.array_equal(cache.get("k").samples, fake_clip("new").samples)


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_temporary_files_of_killed_cache_writers_are_swept(tmp_path, fake_engine):
    cache = VoiceCache(tmp_path)
    dead = tmp_path / f".{_dead_pid()}-k2j4.tmp"
    live = tmp_path / f".{os.getpid()}-a9x1.tmp"  # being written by a process still running
    for p in (dead, live):
        p.write_bytes(b"VFXCLIP\0 partial")
    synthesize(["Hold."], SETTINGS, engine=fake_engine, cache=cache)
    entry = cache.path(VoiceCache.key("Hold.", "fake", "1", "fake/en-us", SETTINGS.rate))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, entry.name])


def test_scratch_folders_of_killed_speech_workers_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = tmp_path / f"voiceflex-workers-{_dead_pid()}-x1y2"
    live = tmp_path / f"voiceflex-workers-{os.getpid()}-z3w4"
    other = tmp_path / "voiceflex-workers-notes"
    for folder in (dead, live, other):
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "cue.wav").write_bytes(b"RIFF")
    with WorkerPool(FLAKY_BACKEND) as pool:
        assert [t for t, _ in pool.render(["one"], "v", 160)] == ["one"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_scratch_folders_of_killed_espeak_renders_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = tmp_path / f"voiceflex-espeak-{_dead_pid()}-x1y2"
    (dead / "sub").mkdir(parents=True)
    monkeypatch.setattr(espeak_cli.shutil, "which", lambda name: "/usr/bin/espeak-ng")
    engine = espeak_cli.EspeakCliEngine()

    def speak(command, **kwargs):
        with wave.open(command[command.index("-w") + 1], "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(22050)
            f.writeframes(np.full(100, 7, "<i2").tobytes())
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(espeak_cli.subprocess, "run", speak)
    assert [t for t, _ in engine.render(["Hold."], "gmw/en-us", 160)] == ["Hold."]
    assert list(tmp_path.iterdir()) == []


# ---- a full disk while the tags are written -------------------------------------------------

_TAGS_ON_A_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from voiceflex.errors import EncoderError
from voiceflex.export.tags import Tags, write_tags
path = Path(sys.argv[1])
path.write_bytes(b"\\xff\\xfb\\x90\\x00" * 20000)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, as ENOSPC would
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 10_000, resource.RLIM_INFINITY))
try:
    write_tags(path, Tags(title="Hips", cover_png=b"\\x89PNG" + bytes(40_000), length_ms=1000))
except EncoderError as e:
    print(e)
    sys.exit(3)
"""


def test_no_room_for_the_tags_is_an_encoder_error(tmp_path):
    # mutagen wraps the OSError in an error of its own, which once escaped as an internal error.
    result = subprocess.run([sys.executable, "-c", _TAGS_ON_A_FULL_DISK, str(tmp_path / "x.mp3")],
                            capture_output=True, text=True, timeout=60, env=_child_env())
    assert result.returncode == 3, result.stderr
    assert result.stdout == "could not write the tags of x.mp3: File too large\n"


# ---- safe by construction: file names, YAML, includes, network --------------------------------

@pytest.fixture
def fake_voice(monkeypatch):
    """The CLI's default engine replaced by the fake one."""
    engine = FakeEngine()
    monkeypatch.setitem(synthesis.ENGINES, "pyttsx3", lambda: engine)
    return engine


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("file_name,stem", [("..yaml", "routine"), (".yaml", "yaml"), ("...yaml", "routine"),
                                             ("a\nb.yaml", "a-b"), ("-o.yaml", "-o")])
def test_exported_file_names_stay_in_the_output_folder(tmp_path, fake_voice, monkeypatch, capsys,
                                                        file_name, stem):
    work = tmp_path / "work"
    work.mkdir()
    (work / file_name).write_text("title: ../../escaped\nsteps:\n  - say: Hello.\n")
    monkeypatch.chdir(work)
    assert main(["export", "--format", "wav", "-o", "out", "--", file_name]) == 0
    assert capsys.readouterr().out == f"out/{stem}.wav\n"
    assert _tree(tmp_path) == sorted(["work", f"work/{file_name}", "work/out", f"work/out/{stem}.wav"])


def test_split_chapter_files_stay_in_their_folder(tmp_path, fake_voice, monkeypatch, capsys):
    routine = textwrap.dedent("""\
        title: Escapes
        steps:
          - name: ../../up
            say: One.
          - name: /etc/passwd
            say: Two.
          - name: ..
            say: Three.
          - name: "..\\\\windows"
            say: Four.
          - name: Sides
            sides: ["../left", "/right"]
            steps:
              - say: Five.
        """)
    (tmp_path / "r.yaml").write_text(routine)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--split", "--format", "wav", "-o", "out", "r.yaml"]) == 0
    assert capsys.readouterr().out == "out/r/r.m3u8\n"
    assert _tree(tmp_path / "out") == ["r", "r/.voiceflex-split.json", "r/01-up.wav", "r/02-etc-passwd.wav", "r/03-chapter.wav",
                                       "r/04-windows.wav", "r/05-sides-left.wav", "r/06-sides-right.wav",
                                       "r/r.m3u8"]
    assert _tree(tmp_path) == ["out", *(f"out/{p}" for p in _tree(tmp_path / "out")), "r.yaml"]


def test_yaml_tags_never_run_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "r.yaml"
    text = f'title: !!python/object/apply:os.system ["touch {marker}"]\nsteps:\n  - say: Hi.\n'
    path.write_text(text)
    with pytest.raises(RoutineError) as raised:
        pipeline.validate(str(path))
    assert str(raised.value) == f"{path}:1:8: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system"
    assert not marker.exists()


_watching: list[tuple[str, tuple]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _watching is not None and (event == "open" or event.startswith(("socket.", "urllib", "http.", "ftplib"))):
        _watching.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside watching()


@contextmanager
def watching() -> Iterator[list[tuple[str, tuple]]]:
    """Every file opened and every socket event in this process while the block runs."""
    global _watching
    _watching = seen = []
    try:
        yield seen
    finally:
        _watching = None


def test_includes_open_no_file_outside_the_routines_folder(tmp_path):
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.yaml").write_text("- say: secret\n")
    (outside / "folder" / "secret.yaml").write_text("- say: secret\n")
    top = tmp_path / "routine"
    (top / "parts").mkdir(parents=True)
    (top / "link.yaml").symlink_to(outside / "secret.yaml")
    (top / "linked").symlink_to(outside / "folder")
    (top / "parts" / "ok.yaml").write_text("- include: ../shared.yaml\n")  # up, but still inside
    (top / "shared.yaml").write_text("- say: Shared.\n")
    text = textwrap.dedent(f"""\
        title: Escapes
        steps:
          - include: parts/ok.yaml
          - include: ../outside/secret.yaml
          - include: link.yaml
          - include: linked/secret.yaml
          - include: {outside / 'secret.yaml'}
          - include: parts/../../outside/secret.yaml
        """)
    (top / "r.yaml").write_text(text)
    with watching() as seen, pytest.raises(RoutineError) as raised:
        pipeline.validate(str(top / "r.yaml"))
    assert [(d.location.line, d.message.split("`", 2)[-1]) for d in raised.value.diagnostics] == [
        (4, " points outside the routine's folder"),
        (5, " points outside the routine's folder"),
        (6, " points outside the routine's folder"),
        (7, " must be a path relative to this file"),
        (8, " points outside the routine's folder"),
    ]
    opened = {Path(args[0]).resolve() for event, args in seen if event == "open" and isinstance(args[0], str)}
    assert opened == {top / "r.yaml", top / "parts" / "ok.yaml", top / "shared.yaml"}


def test_plan_render_and_export_touch_no_network(tmp_path, fake_voice, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text("title: Quiet\nauthor: me\nsteps:\n  - say: Hello.\n  - hold: 3s\n")
    formats = ["wav", "mp3"] if shutil.which("ffmpeg") else ["wav"]
    with watching() as seen:
        for fmt in formats:
            assert main(["export", "--format", fmt, "-o", "out", "r.yaml"]) == 0
        assert main(["plan", "--json", "r.yaml"]) == 0
    network = [(event, args) for event, args in seen if event != "open"
               and not (event == "socket.__new__" and args[1] == socket.AF_UNIX)]
    assert network == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"r.{fmt}" for fmt in formats)


def test_a_routine_path_too_long_for_the_file_system_is_a_usage_error(capsys):
    name = "a" * 5000 + ".yaml"
    assert main(["validate", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"voiceflex: {'a' * 59}…: File name too long\n")
    assert "Traceback" not in err and len(err) < 300
