"""Property tests: whatever routine text arrives, load + validate + compile ends in a result or located errors.

The normal run uses a short profile; `scripts/fuzz` runs the same properties
with 10,000+ examples each (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fake_ms
from voiceflex import pipeline
from voiceflex.errors import RoutineError
from voiceflex.routine import read
from voiceflex.timeline import compile_routine

settings.register_profile("default", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")), deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BUILTINS = Path(__file__).resolve().parent.parent / "src/voiceflex/routines"

# ---- strategies ------------------------------------------------------------------

texts = st.one_of(
    st.sampled_from(["Hold.", "Kneel on your {side} knee.", "Round {round} of {rounds}", "{seconds} s",
                     "{{braces}}", "{nope}", "}", "", " ", "no", "a" * 600]),
    st.text(min_size=0, max_size=40),  # any unicode, control characters included
)
numbers = st.one_of(st.integers(-10, 10), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.sampled_from([0, 1, 1000, 1001, 3600, 21600, 21601, 10**9]))
durations = st.one_of(numbers, st.sampled_from(["30s", "1.5s", "750ms", "2m", "1m30s", "1h", "01:30", "7h",
                                                "-5s", "0s", "soon", "1:99", "", "1e400"]))
anything = st.one_of(st.none(), st.booleans(), numbers, texts, st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
tone_names = st.sampled_from(["start", "end", "switch", "tick", "done", "inhale", "exhale", "beep", ""])
# The routine under test is routine.yaml in a folder of its own: itself (a cycle), escapes,
# and paths no file system takes.
include_paths = st.one_of(texts, st.sampled_from([
    "routine.yaml", "./routine.yaml", "../routine.yaml", "/etc/passwd", ".", "..", "a\0b.yaml",
    "x" * 5000, "x/" * 3000, "~/x.yaml", "sub/../../routine.yaml"]))


def steps(depth: int):
    leaf = st.one_of(
        st.fixed_dictionaries({"say": texts}),
        st.fixed_dictionaries({"pause": durations}),
        st.fixed_dictionaries({"tone": tone_names}),
        st.fixed_dictionaries({"hold": durations}, optional={
            "say": texts, "halfway": texts, "countdown": numbers, "tick": st.booleans(),
            "cues": st.lists(st.fixed_dictionaries({"at": durations}, optional={"say": texts, "tone": tone_names}),
                             max_size=3)}),
        st.fixed_dictionaries({"rest": durations}, optional={"say": texts, "countdown": numbers}),
        st.fixed_dictionaries({"include": include_paths}, optional={"name": texts}),
        st.fixed_dictionaries({"breathe": st.fixed_dictionaries(
            {"in": durations, "out": durations},
            optional={"hold": durations, "hold_out": durations, "cycles": numbers, "for": durations,
                      "voice": numbers})}),
    )
    if depth == 0:
        return leaf
    inner = st.lists(steps(depth - 1), min_size=0, max_size=3)
    return st.one_of(
        leaf,
        st.fixed_dictionaries({"sides": st.lists(st.sampled_from(["left", "right", "", "up"]), max_size=3),
                               "steps": inner}, optional={"switch": texts, "name": texts}),
        st.fixed_dictionaries({"repeat": numbers, "steps": inner}, optional={"rest": durations, "name": texts}),
    )


routines = st.fixed_dictionaries(
    {"title": texts, "steps": st.lists(steps(2), max_size=5)},
    optional={"voice": st.fixed_dictionaries({}, optional={"rate": numbers, "gap": durations, "id": texts}),
              "tones": st.dictionaries(tone_names, st.fixed_dictionaries({}, optional={
                  "freq": numbers, "ms": numbers, "db": numbers}), max_size=2),
              "language": texts, "description": anything},
)


@st.composite
def mutated(draw, base):
    """A routine with one of its mappings changed: a key dropped, misspelt or retyped."""
    data = draw(base)
    mappings = [m for m in _walk(data) if isinstance(m, dict) and m]
    if mappings:
        target = draw(st.sampled_from(mappings))
        key = draw(st.sampled_from(sorted(target, key=str)))
        action = draw(st.sampled_from(["drop", "rename", "retype", "nest"]))
        if action == "drop":
            del target[key]
        elif action == "rename":
            target[draw(st.sampled_from([key + "x", key[:-1], key[:1] + key]))] = target.pop(key)
        elif action == "retype":
            target[key] = draw(anything)
        else:
            target[key] = {"repeat": 2, "steps": [{"repeat": 1000, "steps": [target[key]]}]}
    return data


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _builtin_texts() -> list[str]:
    return [p.read_text() for p in sorted(BUILTINS.glob("*.yaml"))]


@st.composite
def damaged_text(draw):
    """The text of a built-in routine with bytes inserted, deleted or replaced."""
    text = draw(st.sampled_from(_builtin_texts()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from([":", "-", "  ", "\t", "{", "}", "[", "&a", "*a", "!!int", "\x00", "\n",
                                     "'", '"', "\ufeff", "hodl", "---", "%YAML 1.1"]))
        cut = draw(st.integers(0, 3))
        text = text[:at] + junk + text[at + cut:]
    return text


# ---- the property ----------------------------------------------------------------


def _check(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routine.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    lines = text.count("\n") + 2
    try:
        pipeline.validate(str(path))
        routine, _ = read(str(path))
        compile_routine(routine, fake_ms)  # overlap checks need speech lengths
    except RoutineError as exc:
        assert exc.exit_code == 2
        for d in exc.diagnostics:
            assert d.location.file == str(path), d
            assert 1 <= d.location.line <= lines, d
            assert d.location.column >= 1, d
            assert d.message and "\n" not in d.message, d


def _dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@given(routines)
def test_generated_routines(tmp_path_factory, data):
    _check(tmp_path_factory.mktemp("r"), _dump(data))


@given(mutated(routines))
def test_mutated_routines(tmp_path_factory, data):
    _check(tmp_path_factory.mktemp("r"), _dump(data))


@given(damaged_text())
def test_damaged_builtin_text(tmp_path_factory, text):
    _check(tmp_path_factory.mktemp("r"), text)


@settings(max_examples=20)
@given(mutated(routines))
def test_memory_stays_bounded(tmp_path_factory, data):
    tracemalloc.start()
    try:
        _check(tmp_path_factory.mktemp("r"), _dump(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
