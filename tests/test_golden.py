"""Golden tests: each routine under cases/ beside its expected plan JSON or error output.

One file per feature.  Run with VOICEFLEX_UPDATE_GOLDEN=1 to rewrite the
expected files after a deliberate change, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from voiceflex import pipeline
from voiceflex.config import read_config
from voiceflex.errors import ConfigError, RoutineError, format_diagnostics

from helpers.spec_invariants import check_plan

CASES = Path(__file__).parent / "cases"
UPDATE = bool(os.environ.get("VOICEFLEX_UPDATE_GOLDEN"))


def _cases(folder: str, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in (CASES / folder).glob("*.yaml") if p.name not in skip)


def _check(actual: str, expected_path: Path) -> None:
    if UPDATE:
        expected_path.write_text(actual)
    assert expected_path.exists(), f"no golden file {expected_path.name}; run with VOICEFLEX_UPDATE_GOLDEN=1"
    assert actual == expected_path.read_text()


@pytest.fixture
def in_cases(monkeypatch):
    # Sources in the plan are shown relative to where the command runs.
    monkeypatch.chdir(CASES)


@pytest.mark.parametrize("path", _cases("timeline"), ids=lambda p: p.stem)
def test_timeline(path: Path, fake_engine, in_cases) -> None:
    plan = pipeline.plan(f"timeline/{path.name}", engine=fake_engine)
    check_plan(plan.timeline.to_json())
    actual = json.dumps(plan.timeline.to_json(), indent=1, ensure_ascii=False) + "\n"
    _check(actual, path.with_suffix(".json"))


@pytest.mark.parametrize("path", _cases("errors", skip=("include-cycle-part.yaml",)), ids=lambda p: p.stem)
def test_errors(path: Path, fake_engine, in_cases, capsys) -> None:
    with pytest.raises(RoutineError) as info:
        pipeline.plan(f"errors/{path.name}", engine=fake_engine)
    print(format_diagnostics(info.value), end="")
    _check(capsys.readouterr().out, path.with_suffix(".txt"))


@pytest.mark.parametrize("path", sorted((CASES / "config").glob("*.toml")), ids=lambda p: p.stem)
def test_config_errors(path: Path, in_cases, capsys) -> None:
    with pytest.raises(ConfigError) as info:
        read_config(Path("config") / path.name)
    print(format_diagnostics(info.value), end="")
    _check(capsys.readouterr().out, path.with_suffix(".txt"))
