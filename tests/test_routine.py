"""Unit tests of the routine reader, durations, loader and schema."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from voiceflex.errors import RoutineError, UsageError
from voiceflex.routine import builtin_names, load, resolve
from voiceflex.routine import yamlsource
from voiceflex.routine.durations import format_ms, parse_ms
from voiceflex.routine.schema import json_schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value, ms", [
    (30, 30_000), (1.5, 1500), ("30s", 30_000), ("1.5s", 1500), ("750ms", 750), ("2m", 120_000),
    ("1m30s", 90_000), ("1h", 3_600_000), ("01:30", 90_000), ("1:02:03", 3_723_000),
    ("1h 30m", 5_400_000), ("45", 45_000), (0.0015, 2),
])
def test_durations(value, ms):
    assert parse_ms(value) == ms


@pytest.mark.parametrize("value", ["soon", "1:75", "", "5x", True, None, [1], "Infinity", float("nan"), "1m1h"])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_ms(value)


def test_signed_offsets():
    assert parse_ms("-5s", signed=True) == -5000
    assert parse_ms(-2.5, signed=True) == -2500
    with pytest.raises(ValueError):
        parse_ms("-5s")


def test_format_ms():
    assert [format_ms(x) for x in (0, 59_999, 61_000, 3_723_000)] == ["0:00", "0:59", "1:01", "1:02:03"]


def _parse(text: str):
    return yamlsource.parse(text, "t.yaml")


@pytest.mark.parametrize("text, value", [
    ("no", "no"), ("off", "off"), ("yes", "yes"), ("on", "on"), ("true", True), ("False", False),
    ("1:30", "1:30"), ("010", 10), ("0x1F", 31), ("0o17", 15), ("1.5", 1.5), ("1e3", 1000.0),
    ("~", None), ("null", None), ("'true'", "true"), ('"42"', "42"), ("!!str 42", "42"),
])
def test_yaml_12_scalars(text, value):
    assert _parse(f"k: {text}").value["k"][1].value == value


def test_nodes_carry_line_and_column():
    node = _parse("title: x\nsteps:\n  - say: hi\n")
    step = node.value["steps"][1].value[0]
    key, value = step.value["say"]
    assert (key.location.line, key.location.column) == (3, 5)
    assert (value.location.line, value.location.column) == (3, 10)


def test_alias_bomb_is_refused_at_an_alias():
    levels = ["a: &a [" + ", ".join(["x"] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(RoutineError) as info:
        _parse("\n".join(levels))
    d = info.value.diagnostics[0]
    assert "expands to more than" in d.message
    assert d.location.line == 6  # e: 9**5 values, the first level past the limit


def test_small_aliases_are_fine():
    node = _parse("a: &s {say: hi}\nb: [*s, *s]")
    assert [n.value["say"][1].value for n in node.value["b"][1].value] == ["hi", "hi"]


def test_deep_nesting_is_refused_without_recursion():
    with pytest.raises(RoutineError) as info:
        _parse("a:\n" + "".join("  " * i + "- \n" for i in range(1, 80)))
    assert "nested more than 64" in info.value.diagnostics[0].message
    with pytest.raises(RoutineError) as info:  # libyaml stops this one itself
        _parse("[" * 100_000)
    assert info.value.diagnostics[0].location.line == 1


def test_duplicate_keys_and_second_documents_are_errors():
    with pytest.raises(RoutineError, match="appears twice"):
        _parse("a: 1\na: 2\n")
    with pytest.raises(RoutineError, match="one YAML document"):
        _parse("a: 1\n---\nb: 2\n")


def test_a_duplicate_key_drops_only_its_own_value():
    # Many mappings, each with a repeated key and then a fresh one: the fresh
    # keys must all survive, whatever memory the dropped key nodes freed.
    text = "".join(f"- {{a: 1, a: 2, b{i}: 3, c: 4}}\n" for i in range(300))
    problems: list = []
    root = yamlsource.parse(text, "t.yaml", problems)
    assert len(problems) == 300
    assert [sorted(item.value) for item in root.value] == [sorted(["a", f"b{i}", "c"]) for i in range(300)]
    assert all(item.value["a"][1].value == 1 for item in root.value)


def test_non_utf8_is_located():
    with pytest.raises(RoutineError) as info:
        yamlsource.decode("title: ok\nsay: caf\xe9\n".encode("latin-1"), "t.yaml")
    loc = info.value.diagnostics[0].location
    assert (loc.line, loc.column) == (2, 9)


def test_oversized_file_is_refused():
    with pytest.raises(RoutineError, match="limited to"):
        yamlsource.decode(b"#" * 2_000_000, "t.yaml")


def test_every_error_of_a_file_at_once(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("title: x\nsteps:\n  - pause: soon\n  - say: 3\n  - hodl: 2\n")
    with pytest.raises(RoutineError) as info:
        load(str(f))
    assert [d.location.line for d in info.value.diagnostics] == [3, 4, 5]


def test_resolve_builtins_and_paths(tmp_path):
    assert set(builtin_names()) >= {"hip-flexor-stretch", "lacrosse-ball-release", "desk-reset"}
    path, display = resolve("desk-reset")
    assert path.is_file() and display == "desk-reset.yaml"
    with pytest.raises(UsageError, match="did you mean `desk-reset`"):
        resolve("desk-rest")
    with pytest.raises(UsageError, match="no such routine file"):
        resolve(str(tmp_path / "missing.yaml"))


def test_include_symlink_cannot_escape(tmp_path):
    inside = tmp_path / "routine"
    inside.mkdir()
    (tmp_path / "secret.yaml").write_text("- say: secret\n")
    (inside / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    (inside / "r.yaml").write_text("title: x\nsteps:\n  - include: link.yaml\n")
    with pytest.raises(RoutineError, match="outside the routine's folder"):
        load(str(inside / "r.yaml"))


# ---- the JSON Schema agrees with the loader ----------------------------------------


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _routine_files() -> list[Path]:
    files = sorted((ROOT / "src/voiceflex/builtin_routines").glob("*.yaml"))
    files += sorted(p for p in (ROOT / "tests/cases/timeline").glob("*.yaml"))
    return files


@pytest.mark.parametrize("path", _routine_files(), ids=lambda p: p.name)
def test_valid_routines_satisfy_the_schema(path, validator):
    data = yamlsource.parse(path.read_text(), path.name).plain()
    errors = list(validator.iter_errors(data))
    assert not errors, errors[0].message


def test_schema_rejects_what_the_loader_rejects(validator):
    assert list(validator.iter_errors({"title": "x", "steps": [{"hodl": 3}]}))
    assert list(validator.iter_errors({"title": "x", "steps": [{"say": "x", "nmae": "y"}]}))
    assert list(validator.iter_errors({"steps": [{"say": "x"}]}))


def _doc_examples() -> list[tuple[str, str]]:
    out = []
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        if doc.exists():
            for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
                out.append((f"{doc.name}#{i + 1}", block))
    return out


@pytest.mark.parametrize("name, text", _doc_examples(), ids=lambda x: x if isinstance(x, str) and "#" in x else "")
def test_yaml_examples_in_the_docs_are_valid(name, text, tmp_path):
    f = tmp_path / "example.yaml"
    f.write_text(text)
    from voiceflex import pipeline

    pipeline.validate(str(f))  # raises RoutineError with the located problem


def test_built_in_tones_are_a_fourth_apart_and_no_octave_of_another():
    from voiceflex.routine.model import DEFAULT_TONES, GLIDES

    pitches = sorted(spec.freq for name, spec in DEFAULT_TONES.items() if name not in GLIDES)
    assert len(pitches) == 5
    assert all(high / low >= 4 / 3 - 1e-3 for low, high in zip(pitches, pitches[1:]))
    # A tone's second harmonic must not land within a semitone of another tone.
    for low in pitches:
        for high in pitches:
            assert not 2 ** (-1 / 12) <= high / (2 * low) <= 2 ** (1 / 12), (low, high)
