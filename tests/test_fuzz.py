"""Property tests: whatever routine text arrives, load + validate + compile ends in a result or located errors.

The normal run uses a short profile; `scripts/fuzz` runs the same properties
with 10,000+ examples each (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers.fakes import fake_ms
from voiceflex import pipeline
from voiceflex.compiler import compile_routine
from voiceflex.errors import RoutineError
from voiceflex.routine import read, yamlsource
from voiceflex.routine.schema import MAX_NESTING

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


@contextmanager
def _folder():
    """An empty folder for one example, removed after it (pytest's numbered folders slow down
    as thousands accumulate, and damaged cache entries include 8 GB sparse files)."""
    with tempfile.TemporaryDirectory(prefix="voiceflex-fuzz-") as name:
        yield Path(name)


def _check(tmp_path: Path, text: str, others: dict[str, str] | None = None) -> list:
    """`text` as routine.yaml (with `others`, files next to it) validates, or gives located
    errors, which are returned."""
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
        return []
    except RoutineError as exc:
        assert exc.exit_code == 2
        for d in exc.diagnostics:
            assert d.location.file in files, d
            assert 1 <= d.location.line <= files[d.location.file].count("\n") + 2, d
            assert d.location.column >= 1, d
            assert d.message and "\n" not in d.message, d
        return exc.diagnostics


def _dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@given(routines)
def test_generated_routines(data):
    with _folder() as folder:
        _check(folder, _dump(data))


@given(mutated(routines))
def test_mutated_routines(data):
    with _folder() as folder:
        _check(folder, _dump(data))


@given(damaged_text())
def test_damaged_builtin_text(text):
    with _folder() as folder:
        _check(folder, text)


@settings(max_examples=20)
@given(mutated(routines))
def test_memory_stays_bounded(data):
    tracemalloc.start()
    try:
        with _folder() as folder:
            _check(folder, _dump(data))
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
def test_numbers_anywhere(slot, literal):
    with _folder() as folder:
        _check(folder, slot.format(n=literal))


# A graph of up to 8 files (file 0 is the routine itself), each including some of the files
# (itself and the root too: cycles) up to 20 times each, under an expansion budget drawn per
# graph: the loader's budget check is the same at any size, so a small budget crosses it with
# the fan-out real and the example cheap; the examples below hold the real budget.
include_graphs = st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 20)), max_size=3), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)))
FAN_OUT = [[(1, 20)], [(2, 20)], [(3, 20)], [(4, 20)], [(5, 20)], []]  # 20**5 leaves, as in issue 13
CYCLES = [[(1, 20)], [(2, 20), (1, 20)], [(1, 20), (2, 20), (0, 3)]]
CHAIN = [[(k + 1, 1)] for k in range(19)] + [[]]  # deeper than includes may nest


def _graph_name(k: int) -> str:
    return "routine.yaml" if k == 0 else f"f{k}.yaml"


def _graph_files(graph, wrapped) -> dict[str, str]:
    """Each file's includes, then a spoken and a silent leaf; the root and wrapped files are routines."""
    files = {}
    for k, edges in enumerate(graph):
        lines = [f"include: {_graph_name(target)}" for target, times in edges for _ in range(times)]
        lines += ["say: Leaf.", "pause: 1s"]
        if k == 0 or wrapped[k]:
            files[_graph_name(k)] = "title: Part\nsteps:\n" + "".join(f"  - {line}\n" for line in lines)
        else:
            files[_graph_name(k)] = "".join(f"- {line}\n" for line in lines)
    return files


def _graph_problems(graph, wrapped, sizes, budget) -> set[tuple[str, int, int, int]]:
    """(kind, file, line, column) of each problem, the includes expanded in the order written:
    an include nested too deep, one that closes a cycle, and the one whose file's values first
    take the count past `budget` (includes after it are not expanded)."""
    problems = set()
    expanded = [sizes[0], False]  # values so far, budget crossed

    def visit(k: int, stack: list[int]) -> None:
        first_line, indent = (3, 4) if k == 0 or wrapped[k] else (1, 2)
        lines = (target for target, times in graph[k] for _ in range(times))
        for line, target in enumerate(lines, first_line):
            if len(stack) - 1 >= MAX_NESTING:
                problems.add(("nesting", k, line, indent + 1))  # at the key
            elif target in stack:
                problems.add(("cycle", k, line, indent + 10))  # at the path
            else:
                expanded[0] += sizes[target]
                if expanded[0] <= budget:
                    visit(target, [*stack, target])
                elif not expanded[1]:
                    expanded[1] = True
                    problems.add(("budget", k, line, indent + 10))

    visit(0, [0])
    return problems


KINDS = {"nested more than": "nesting", "include cycle": "cycle", "with its includes expanded": "budget"}


@example((FAN_OUT, [True] * 6), None).via("the issue's fan-out at the real budget")
@example((CYCLES, [True] * 3), None).via("cycles at every level at the real budget")
@example((CHAIN, [True] * 20), None).via("a chain deeper than the nesting limit")
@given(include_graphs, st.integers(1, 3000))
def test_include_graphs(graph_and_wrapped, extra):
    """Includes expand in the order written until the budget on values: exactly the cycles,
    the too deep includes and the include that crosses the budget are reported, where they
    are, in bounded memory; a graph with none of them is a valid routine."""
    graph, wrapped = graph_and_wrapped
    files = _graph_files(graph, wrapped)
    sizes = [yamlsource.parse(files[_graph_name(k)], "x").size for k in range(len(graph))]
    budget = yamlsource.MAX_NODES if extra is None else max(sizes) + extra
    expected = _graph_problems(graph, wrapped, sizes, budget)
    if extra is None:  # memory is worth tracing (slowly) at the real budget only
        tracemalloc.start()
    try:
        with _folder() as folder, mock.patch.object(yamlsource, "MAX_NODES", budget):
            root = files.pop("routine.yaml")
            got = _check(folder, root, files)
            names = {str(folder / _graph_name(k)): k for k in range(len(graph))}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kinds = [next((kind for words, kind in KINDS.items() if d.message.startswith(words)), d.message) for d in got]
    found = {(kind, names[d.location.file], d.location.line, d.location.column) for kind, d in zip(kinds, got)}
    assert found == expected
    assert kinds.count("budget") <= 1
    assert peak < 64 * 2**20


def test_an_include_path_is_resolved_once_however_often_it_is_expanded():
    """400 expansions of two include paths ask the file system about each path once: at every
    expansion, resolving and checking the path again cost more than expanding it."""
    files = _graph_files([[(1, 20)], [(2, 20)], []], [True] * 3)
    with _folder() as folder:
        for name, text in files.items():
            (folder / name).write_text(text)
        with mock.patch("os.path.realpath", wraps=os.path.realpath) as realpath:
            _, problems = read(str(folder / "routine.yaml"))
    assert problems == []
    # the root's folder and path, each file as read (3) and each include path (2)
    assert realpath.call_count <= 7, realpath.call_args_list


BYTE_DAMAGES = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 64), st.just(0)),
)
# What can stand in an entry's place instead of a file of bytes.
ENTRY_KINDS = st.sampled_from([None, "directory", "fifo", "dev-zero", "sparse", "empty", "link"])


@given(st.lists(BYTE_DAMAGES, max_size=3), ENTRY_KINDS, st.text(min_size=1, max_size=30))
def test_damaged_cache_entries(damages, kind, text):
    """Whatever happens to an entry, reading it gives the clip stored or None (without
    blocking), and the cue stored again reads back whole unless a folder is in the way."""
    import numpy as np

    from helpers.fakes import fake_clip
    from voiceflex.voice import VoiceCache

    with _folder() as folder:
        cache = VoiceCache(folder)
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
