"""`voiceflex plan` with the real pyttsx3 engine: real lengths, cached after the first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.spec_invariants import check_plan

pytestmark = pytest.mark.integration


def plan(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "VOICEFLEX_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "voiceflex", "plan", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("name", ["hip-flexor-stretch", "lacrosse-ball-release", "desk-reset"])
def test_builtin_plans_keep_the_spec(name, tmp_path):
    result = plan("--json", name, cache=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    check_plan(data)
    speech = [e for e in data["events"] if e["kind"] == "speech"]
    assert speech and all(200 <= e["end_ms"] - e["start_ms"] <= 8000 for e in speech), "real speech lengths"
    titles = [c["title"] for c in data["chapters"]]
    assert len(titles) >= 3 and any(t.endswith(": left") for t in titles) and any(t.endswith(": right") for t in titles)


def test_second_plan_renders_nothing(tmp_path):
    cache = tmp_path / "cache"
    first = plan("--json", "desk-reset", cache=cache)
    assert first.returncode == 0, first.stderr
    entries = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert entries, "the first plan filled the cache"
    second = plan("--json", "desk-reset", cache=cache)
    assert second.returncode == 0
    assert second.stdout == first.stdout, "same lengths, to the millisecond"
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == entries, "nothing re-rendered"


def test_plan_table_is_readable(tmp_path):
    result = plan("hip-flexor-stretch", cache=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Kneeling hip flexor stretch: ")
    assert any("Stretch: right" in line for line in lines)
    assert any(line.split()[-1:] == ["[start]"] for line in lines)


ANNOUNCED = """\
title: Announced
announce: true
steps:
  - name: Stretch
    hold: 6s
    countdown: 3
    countdown_voice: false
  - rest: 8s
  - name: Pigeon stretch
    hold: 4s
"""


def test_announced_rests_and_tick_countdowns_with_the_real_voice(tmp_path):
    path = tmp_path / "announced.yaml"
    path.write_text(ANNOUNCED)
    result = plan("--json", str(path), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    check_plan(data)
    speech = [e for e in data["events"] if e["kind"] == "speech"]
    assert [e["text"] for e in speech] == ["Rest, 8 seconds. Next: Pigeon stretch."]
    rest_start = data["chapters"][0]["end_ms"] - 8000 - 320  # the rest, then its end tone, end the chapter
    assert speech[0]["start_ms"] == rest_start and speech[0]["end_ms"] - speech[0]["start_ms"] > 1000
    ticks = [e["start_ms"] for e in data["events"] if e.get("name") == "tick"]
    hold_end = next(e["start_ms"] for e in data["events"] if e.get("name") == "end")
    assert ticks == [hold_end - 3000, hold_end - 2000, hold_end - 1000]
