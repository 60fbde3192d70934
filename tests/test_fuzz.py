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

from helpers.fakes import fake_ms
from voiceflex import pipeline
from voiceflex.errors import RoutineError
from voiceflex.routine import read
from voiceflex.timeline import compile_routine

settings.register_profile("default", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10000")), deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BUILTINS = Path(__file__).resolve().parent.parent / "src/voiceflex/builtin_routines"

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


def _check(tmp_path: Path, text: str, others: dict[str, str] | None = None) -> None:
    """`text` as routine.yaml (with `others`, files next to it) validates, or gives located errors."""
    path = tmp_path / "routine.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    files = {str(path): text}
    for name, other in (others or {}).items():
        (tmp_path / name).write_text(other, encoding="utf-8")
        files[str(tmp_path / name)] = other
    try:
        pipeline.validate(str(path))
        routine, _ = read(str(path))
        compile_routine(routine, fake_ms)  # overlap checks need speech lengths
    except RoutineError as exc:
        assert exc.exit_code == 2
        for d in exc.diagnostics:
            assert d.location.file in files, d
            assert 1 <= d.location.line <= files[d.location.file].count("\n") + 2, d
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


# ---- numbers, include graphs, damaged cache entries (issue 13) ---------------------

# Number literals as they are typed, unquoted or quoted: huge integers, long hex, exponents
# far past any limit, long fractions.  YAML's dumper would quote or reformat them.
number_literals = st.one_of(
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(1, 6000).map(lambda n: "0x" + "f" * n),
    st.integers(-10**7, 10**7).map(lambda e: f"1e{e}"),
    st.integers(0, 3000).map(lambda n: "0." + "0" * n + "1"),
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True).map(repr),
    st.sampled_from(["-0", "+5", "0o777", ".inf", "-.inf", ".nan", "1_000", "١٢٣", "²", "①"]),
).flatmap(lambda literal: st.sampled_from([literal, f'"{literal}"', f'"{literal}s"', f'"-{literal}"']))
NUMBER_SLOTS = (
    "title: {n}\nsteps:\n  - say: Go.\n",
    "title: x\nsteps:\n  - pause: {n}\n",
    "title: x\nsteps:\n  - repeat: {n}\n    steps:\n      - say: Go.\n",
    "title: x\nvoice: {{rate: {n}, gap: {n}}}\nsteps:\n  - say: Go.\n",
    "title: x\nsteps:\n  - hold: {n}\n    countdown: {n}\n    tick: true\n    cues:\n      - {{at: {n}, say: Now.}}\n",
    "title: x\nsteps:\n  - breathe: {{in: {n}, out: 1s, hold: {n}, for: {n}}}\n",
    "title: x\nsteps:\n  - breathe: {{in: 1s, out: 1s, cycles: {n}, voice: {n}}}\n",
    "title: x\ntones:\n  beep: {{freq: {n}, ms: {n}, db: {n}}}\nsteps:\n  - tone: beep\n",
    "title: x\nauthor: {n}\ndescription: {n}\nsteps:\n  - say: \"{{seconds}} {n}\"\n",
)


@given(st.sampled_from(NUMBER_SLOTS), number_literals)
def test_numbers_anywhere(tmp_path_factory, slot, literal):
    _check(tmp_path_factory.mktemp("r"), slot.format(n=literal))


# A graph of up to 6 files, each including some of the others (itself and files before it
# too: cycles) up to 20 times each: fan-outs of 20**5 must be refused, not expanded.
include_graphs = st.integers(1, 6).flatmap(lambda n: st.lists(
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 20)), max_size=3), min_size=n, max_size=n))


# Graphs that reach the expansion budget take ~0.5 s each: fewer in the normal run.
@settings(max_examples=50) if os.environ.get("HYPOTHESIS_PROFILE", "default") == "default" else (lambda f: f)
@given(include_graphs, st.booleans())
def test_include_graphs(tmp_path_factory, graph, wrapped):
    files = {}
    for k, edges in enumerate(graph):
        lines = [f"  - include: f{target}.yaml\n" * times for target, times in edges]
        body = "".join(lines) + "  - say: Leaf.\n  - pause: 1s\n"
        files[f"f{k}.yaml"] = ("title: Part\nsteps:\n" + body) if wrapped or k == 0 else body.replace("  - ", "- ")
    root = files.pop("f0.yaml")
    files["f0.yaml"] = "- say: Root again.\n"  # the root is routine.yaml; f0 is a plain file
    _check(tmp_path_factory.mktemp("r"), root, files)


BYTE_DAMAGES = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 64), st.just(0)),
)
# What can stand in an entry's place instead of a file of bytes.
ENTRY_KINDS = st.sampled_from([None, "directory", "fifo", "dev-zero", "sparse", "empty", "link"])


@given(st.lists(BYTE_DAMAGES, max_size=3), ENTRY_KINDS, st.text(min_size=1, max_size=30))
def test_damaged_cache_entries(tmp_path_factory, damages, kind, text):
    """Whatever happens to an entry, reading it gives the clip stored or None (without
    blocking), and the cue stored again reads back whole unless a folder is in the way."""
    import numpy as np

    from helpers.fakes import fake_clip
    from voiceflex.voice import VoiceCache

    cache = VoiceCache(tmp_path_factory.mktemp("cache"))
    clip = fake_clip(text)
    cache.put("k", clip)
    path = cache.path("k")
    data = bytearray(path.read_bytes())
    for how, at, bit in damages:
        if how == "flip" and data:
            data[at % len(data)] ^= 1 << bit
        elif how == "cut":
            data = data[: at % (len(data) + 1)]
        elif how == "extend":
            data += bytes(at)
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "link":
        path.with_name("elsewhere").write_bytes(bytes(data))
        path.symlink_to(path.with_name("elsewhere"))
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(8 << 30)
    else:
        path.write_bytes(b"" if kind == "empty" else bytes(data))
    got = cache.get("k")
    assert got is None or (got.rate == clip.rate and np.array_equal(got.samples, clip.samples))
    if kind is not None:
        assert got is None
    again = cache.put("k", clip)
    assert np.array_equal(again.samples, clip.samples)
    if not path.is_dir():
        assert np.array_equal(cache.get("k").samples, clip.samples)
