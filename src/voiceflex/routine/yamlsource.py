"""Read YAML into a tree of marked nodes, with YAML 1.2 scalars and hard limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from voiceflex.errors import Diagnostic, Location, RoutineError

try:  # libyaml's event parser is iterative and fast; fall back to the pure one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
# Nodes a document may expand to once aliases are followed: far above any real
# routine, far below what an alias bomb ("billion laughs") would build.
MAX_NODES = 100_000
# Characters in a plain number.  Far above any number a routine holds; a longer
# one (5000 digits, a long hex literal) costs time to convert and cannot even be
# printed back in a message.
MAX_NUMBER_CHARS = 40

# YAML 1.2 core schema.  PyYAML implements 1.1, where `no` is False and `1:30`
# is 90; routines need `say: no` to stay a string and "01:30" to be mm:ss.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_ODD_BREAK = re.compile("[\x85\u2028\u2029]")


@dataclass(eq=False)
class Node:
    """A YAML value with where it starts.

    `value` is a str/int/float/bool/None for scalars, a list of Nodes for
    sequences, and a dict of key -> (key Node, value Node) for mappings.
    """

    value: Any
    location: Location
    size: int = 1  # nodes this one expands to, aliases followed

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        """The value as plain Python data (for values that are scalars or small)."""
        if self.is_map:
            return {k: v.plain() for k, (_, v) in self.value.items()}
        if self.is_seq:
            return [n.plain() for n in self.value]
        return self.value


def decode(data: bytes, file: str, size: int = 0) -> str:
    """UTF-8 text of a routine file, or a located error at the first bad byte.

    `size` is the file's size when `data` may be only its first bytes.
    """
    if len(data) > MAX_FILE_BYTES:
        raise RoutineError([Diagnostic(
            Location(file, 1, 1),
            f"file is {max(size, len(data)):,} bytes; routine files are limited to {MAX_FILE_BYTES:,} bytes",
        )])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        raise RoutineError([Diagnostic(
            Location(file, line, column),
            f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8",
        )]) from None
    text = text.removeprefix("\ufeff")
    # PyYAML (YAML 1.1) counts NEL, LS and PS as line breaks; editors and YAML
    # 1.2 do not, so every line number after one would be off.  Refuse them.
    odd = _ODD_BREAK.search(text)
    if odd:
        before = text[: odd.start()]
        raise RoutineError([Diagnostic(
            Location(file, before.count("\n") + 1, odd.start() - (before.rfind("\n") + 1) + 1),
            f"character U+{ord(odd.group()):04X} (a line separator) is not allowed; use a plain line break",
        )])
    return text


def parse(text: str, file: str, problems: list[Diagnostic] | None = None) -> Node:
    """Parse one YAML document into marked Nodes, or raise RoutineError.

    Problems that leave the tree usable (a duplicate key: the first value is
    kept) go to `problems` when given, so the caller can report them with
    the file's other errors; without it they are raised.
    """
    builder = _Builder(file)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = hint(text, exc)
        if message is None:
            message = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                message = f"{exc.problem} ({exc.context})"
            message = f"YAML syntax error: {message}"
        raise RoutineError([*builder.problems, _diag(file, mark, message)]) from None
    except yaml.YAMLError as exc:  # reader errors carry a position, not a mark
        position = getattr(exc, "position", 0) or 0
        before = text[:position]
        line = before.count("\n") + 1
        column = position - (before.rfind("\n") + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc)
        raise RoutineError([Diagnostic(Location(file, line, column), f"YAML error: {reason}")]) from None
    except RoutineError as exc:
        raise RoutineError([*builder.problems, *exc.diagnostics]) from None
    if builder.root is None:
        raise RoutineError([Diagnostic(Location(file, 1, 1), "file is empty; a routine needs `title:` and `steps:`")])
    if builder.problems:
        if problems is None:
            raise RoutineError(builder.problems)
        problems.extend(builder.problems)
    return builder.root


def hint(text: str, exc: yaml.MarkedYAMLError) -> str | None:
    """What the most common YAML mistakes mean and how to write them, from where the parser stopped."""
    mark = exc.problem_mark or exc.context_mark
    lines = text.splitlines()
    line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    problem = exc.problem or ""
    before = line[:mark.column] if mark is not None else ""
    if "cannot start any token" in problem and "\t" in line[:len(line) - len(line.lstrip())]:
        return "a tab in the indentation: YAML indents with spaces only; replace the tab with spaces"
    if "mapping values are not allowed" in problem:
        key, sep, value = before.lstrip().removeprefix("- ").partition(": ")
        if sep and value.strip():
            whole = line.lstrip().removeprefix("- ").partition(": ")[2].strip()
            return (f"the text of `{key}:` has a second `: `, which YAML reads as a new key; "
                    f'put the text in quotes: {key}: "{_escape(whole)}"')
        if before.lstrip().startswith("- ") and mark.line > 0:
            # `- hold: 10s` then `   - say: Two` deeper: the item continues the value above.
            return ("this `- ` item is indented deeper than the line above, so YAML reads it as part of "
                    "that line's value; line its `-` up with the other items of the list")
    if "block collection" in (exc.context or "") and "'-'" in problem and exc.context_mark is not None:
        return (f"this line is not lined up with the list items above it (their `-` is in column "
                f"{exc.context_mark.column + 1}); indent every item of a list by the same spaces")
    key, sep, value = line.lstrip().removeprefix("- ").partition(": ")
    if sep and value.lstrip()[:1] in ("{", "[") and ("flow" in (exc.context or "") or "expected" in problem):
        what = "a mapping, even a `{side}` placeholder" if value.lstrip()[0] == "{" else "a list"
        return (f"a value that starts with `{value.lstrip()[0]}` is read as {what}; "
                f'put the text in quotes: {key}: "{_escape(value.strip())}"')
    return None


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _diag(file: str, mark: Any, message: str) -> Diagnostic:
    return Diagnostic(Location(file, mark.line + 1, mark.column + 1), message)


class _Builder:
    """Turns the parser's event stream into Nodes with an explicit stack (no recursion)."""

    def __init__(self, file: str):
        self.file = file
        self.root: Node | None = None
        # container, pending key (with whether it repeats an earlier key), anchor
        self.stack: list[tuple[Node, list[tuple[Node, bool]], str | None]] = []
        self.anchors: dict[str, Node] = {}
        self.open_anchors: set[str] = set()
        self.total = 0
        self.documents = 0
        self.aliased = False  # whether the count includes values repeated by aliases
        self.problems: list[Diagnostic] = []  # reported, but the tree is still usable

    def fail(self, mark: Any, message: str) -> None:
        raise RoutineError([_diag(self.file, mark, message)])

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self.fail(event.start_mark, "a routine file holds one YAML document; remove this `---` and what follows")
        elif isinstance(event, yaml.ScalarEvent):
            node = Node(self.scalar(event), self.loc(event))
            if event.anchor:
                self.anchors[event.anchor] = node
            self.add(node, event.start_mark, cost=1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                self.fail(event.start_mark, f"alias *{event.anchor} refers to the value that contains it")
            node = self.anchors.get(event.anchor)
            if node is None:
                self.fail(event.start_mark, f"alias *{event.anchor} has no anchor &{event.anchor} before it")
            self.aliased = True
            self.add(node, event.start_mark, cost=node.size)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(self.stack) >= MAX_DEPTH:
                self.fail(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
            if event.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                self.fail(event.start_mark, f"unsupported YAML tag {event.tag}")
            empty: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
            node = Node(empty, self.loc(event))
            if event.anchor:
                self.open_anchors.add(event.anchor)
            self.stack.append((node, [], event.anchor))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            node, _, anchor = self.stack.pop()
            if anchor:
                self.open_anchors.discard(anchor)
                self.anchors[anchor] = node
            self.add(node, event.start_mark, cost=1)  # its children were counted as they came

    def loc(self, event: yaml.Event) -> Location:
        return Location(self.file, event.start_mark.line + 1, event.start_mark.column + 1)

    def add(self, node: Node, mark: Any, cost: int) -> None:
        self.total += cost
        if self.total > MAX_NODES:
            if self.aliased:
                self.fail(mark, f"the document expands to more than {MAX_NODES:,} values "
                                "(aliases repeating aliases); write the steps out or use `repeat:`")
            self.fail(mark, f"the document holds more than {MAX_NODES:,} values; use `repeat:` for steps that repeat")
        if not self.stack:
            self.root = node
            return
        parent, pending, _ = self.stack[-1]
        parent.size += node.size
        if parent.is_seq:
            parent.value.append(node)
        elif not pending:
            if not isinstance(node.value, str) or node.is_map or node.is_seq:
                self.fail(mark, "mapping keys must be plain words")
            duplicate = node.value in parent.value
            if duplicate:
                first = parent.value[node.value][0].location
                self.problems.append(_diag(self.file, mark, f"key `{node.value}` appears twice in this mapping "
                                                            f"(first on line {first.line}); keep one"))
            # The flag travels with the key: an id() of a dropped node is
            # reused by later nodes, which then vanished as "duplicates" too.
            pending.append((node, duplicate))
        else:
            key, duplicate = pending.pop()
            if not duplicate:
                parent.value[key.value] = (key, node)

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        text, tag = event.value, event.tag
        if tag in ("tag:yaml.org,2002:str",) or (tag is None and event.style):
            return text
        if tag not in (None, "!"):
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                       "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
                value = self.resolve(text, event.start_mark)
                expected = tag.rsplit(":", 1)[1]
                kinds = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}
                if isinstance(value, kinds[expected]) and not (expected != "bool" and isinstance(value, bool)):
                    return value
                self.fail(event.start_mark, f"`{text}` is not a valid !!{expected}")
            self.fail(event.start_mark, f"unsupported YAML tag {tag}")
        if tag == "!":
            return text
        return self.resolve(text, event.start_mark)

    def resolve(self, text: str, mark: Any) -> Any:
        try:
            return _resolve(text)
        except _LongNumber:
            return self.fail(mark, f"this number has {len(text):,} characters; numbers in a routine have at most "
                                   f"{MAX_NUMBER_CHARS} (quote it if it is text)")


class _LongNumber(Exception):
    """A plain scalar is a number longer than MAX_NUMBER_CHARS."""


def _resolve(text: str) -> Any:
    """A plain scalar's value under the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if len(text) > MAX_NUMBER_CHARS and (_INT.match(text) or _OCT.match(text) or _HEX.match(text)
                                         or _FLOAT.match(text)):
        raise _LongNumber
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) or _INF.match(text) or _NAN.match(text):
        return float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                     .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))
    return text
