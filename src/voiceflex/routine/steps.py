"""Read a routine's steps: say, pause, tone, hold and rest with their cues, sides, repeat, breathe, include."""

from __future__ import annotations

import os
from pathlib import Path

from voiceflex.errors import Location
from voiceflex.routine import schema as S
from voiceflex.routine import yamlsource
from voiceflex.routine.model import (
    Breathe, Cue, Hold, Include, Pause, PlayTone, Repeat, Say, Sides, Step, Text,
)
from voiceflex.routine.values import BAD, CONTROL, PATH_CONTROL, kind_of, short, suggest
from voiceflex.spoken import has_words


class StepReader:
    """The step half of the routine loader, which supplies `error`, `mapping`, `value`, `text` and `read`."""

    root_dir: Path
    include_stack: list[Path]
    parsed: dict[Path, yamlsource.Node | None]
    targets: dict[tuple[Path, str], Path | str]
    expanded: int

    def steps(self, node: yamlsource.Node, depth: int) -> tuple[Step, ...]:
        if not node.is_seq:
            self.error(node.location, f"`steps` must be a list (lines starting with `- `), not {kind_of(node.value)}")
            return ()
        if not node.value:
            self.error(node.location, "`steps` must not be empty")
            return ()
        out = []
        for item in node.value:
            step = self.step(item, depth)
            if step is not None:
                out.append(step)
        return tuple(out)

    def step(self, node: yamlsource.Node, depth: int) -> Step | None:
        if not node.is_map:
            hint = ""
            if isinstance(node.value, str) and node.value.split(" ", 1)[0] in S.STEP_KINDS:
                hint = f"; write `{node.value.split(' ', 1)[0]}: ...` with a colon"
            self.error(node.location, f"a step must be a mapping such as `say: ...`, not {kind_of(node.value)}{hint}")
            return None
        keys = node.value
        kind = next((k for k in S.STEP_KINDS if k in keys), None)
        if kind is None:
            unknown = [(k, kn) for k, (kn, _) in keys.items() if k != "name"]
            if unknown and suggest(unknown[0][0], S.STEP_KINDS):
                key, key_node = unknown[0]
                self.error(key_node.location, f"unknown step kind `{key}`{suggest(key, S.STEP_KINDS)}")
            else:
                self.error(node.location, f"a step needs one kind key: {', '.join(S.STEP_KINDS)}")
            return None
        fields = S.STEP_KINDS[kind]
        for key, (key_node, _) in keys.items():
            if key not in fields and key != "name" and key in S.STEP_KINDS:
                self.error(key_node.location, f"`{key}` cannot be combined with `{kind}` in one step; give it a step of its own")
        extra = {k: S.NAME_FIELD for k in ("name",)}
        known = {k: v for k, v in keys.items() if k in fields or k == "name" or k not in S.STEP_KINDS}
        filtered = yamlsource.Node(known, node.location)
        f = self.mapping(filtered, fields, f"`{kind}` step", extra=extra)
        if f is None:
            return None
        kind_node = f[kind]
        location = keys[kind][0].location
        name = self.value(S.NAME_FIELD, f.get("name"))
        name = name.text if isinstance(name, Text) else None
        if kind in ("sides", "repeat", "include") and depth >= S.MAX_NESTING:
            self.error(location, f"nested more than {S.MAX_NESTING} levels of sides/repeat/include")
            return None
        get = lambda key: self.value(fields[key], f.get(key))  # noqa: E731 - tiny local helper

        if kind == "say":
            text = get("say")
            return None if text is BAD else Say(location, name, text)
        if kind == "pause":
            ms = get("pause")
            return None if ms is BAD else Pause(location, name, ms)
        if kind == "tone":
            tone = get("tone")
            return None if tone is BAD else PlayTone(location, name, tone)
        if kind in ("hold", "rest"):
            return self.hold(kind, f, location, name)
        if kind == "sides":
            return self.sides(f, location, name, depth)
        if kind == "repeat":
            count, rest = get("repeat"), get("rest")
            steps = self.steps(f["steps"], depth + 1) if "steps" in f else ()
            if BAD in (count, rest) or not steps:
                return None
            return Repeat(location, name, count, steps, rest, f["rest"].location if "rest" in f else None)
        if kind == "breathe":
            return self.breathe(kind_node, location, name)
        if kind == "include":
            return self.include(kind_node, location, name, depth)
        raise AssertionError(kind)  # pragma: no cover

    def hold(self, kind: str, f: dict[str, yamlsource.Node], location: Location, name: str | None) -> Step | None:
        fields = S.STEP_KINDS[kind]
        got = {k: self.value(fields[k], n) for k, n in f.items() if k not in ("cues", "name")}
        cues = self.cues(f["cues"]) if "cues" in f else ()
        if "countdown_voice" in f and "countdown" not in f:
            self.error(f["countdown_voice"].location, "`countdown_voice` says how a `countdown:` sounds; "
                                                      "this hold has none (add `countdown: 5`, or remove it)")
        if BAD in got.values():
            return None
        return Hold(
            location, name, ms=got[kind], start_tone=kind == "hold",
            say=got.get("say"), halfway=got.get("halfway"),
            countdown=got.get("countdown"),
            countdown_location=f["countdown"].location if "countdown" in f else None,
            cues=cues, tick=bool(got.get("tick")),
            countdown_voice=got.get("countdown_voice") is not False,
        )

    def cues(self, node: yamlsource.Node) -> tuple[Cue, ...]:
        """The good cues of a `cues:` list; the bad ones are reported and left out."""
        if not node.is_seq:
            self.error(node.location, f"`cues` must be a list of {{at: ..., say: ...}} entries, not {kind_of(node.value)}")
            return ()
        out = []
        for item in node.value:
            f = self.mapping(item, S.CUE_FIELDS, "a cue")
            if f is None:
                continue
            got = {k: self.value(S.CUE_FIELDS[k], n) for k, n in f.items()}
            if ("say" in f) == ("tone" in f):
                self.error(item.location, "a cue needs exactly one of `say:` or `tone:`")
            elif BAD not in got.values() and "at" in got:
                out.append(Cue(got["at"], item.location, say=got.get("say"), tone=got.get("tone")))
        return tuple(out)

    def sides(self, f: dict[str, yamlsource.Node], location: Location, name: str | None, depth: int) -> Step | None:
        node = f["sides"]
        names: list[str] = []
        seen: set[str] = set()
        if not node.is_seq or not node.value:
            self.error(node.location, "`sides` is a list of side names, e.g. [left, right]")
        else:
            for item in node.value:
                if not isinstance(item.value, str) or not item.value.strip():
                    self.error(item.location, f"a side name must be text, not {kind_of(item.value)}")
                elif len(item.value) > S.MAX_TEXT or CONTROL.search(item.value):
                    # `{side}` puts the name into spoken text and chapter titles: the
                    # same rules as for any text (a NUL cannot even reach espeak-ng).
                    self.text(item.value, item.location)
                elif not has_words(item.value):
                    self.error(item.location, f"side name {item.value!r} has nothing a voice can speak "
                                              "(`{side}` says it); name the side in words")
                elif item.value in seen:  # a set: a list of 100,000 names stays linear
                    self.error(item.location, f"side `{item.value}` is listed twice")
                else:
                    names.append(item.value)
                    seen.add(item.value)
        switch = self.value(S.STEP_KINDS["sides"]["switch"], f.get("switch"))
        steps = self.steps(f["steps"], depth + 1) if "steps" in f else ()
        if switch is BAD or not names or not steps or len(names) != len(node.value):
            return None
        return Sides(location, name, tuple(names), steps,
                     switch or Text("Switch sides.", location))

    def breathe(self, node: yamlsource.Node, location: Location, name: str | None) -> Step | None:
        f = self.mapping(node, S.BREATHE_FIELDS, "`breathe`")
        if f is None:
            return None
        got = {k: self.value(S.BREATHE_FIELDS[k], n) for k, n in f.items()}
        if ("cycles" in f) == ("for" in f):
            if len(f) == len(node.value):  # else a misspelt key was reported already
                self.error(node.location, "`breathe` needs exactly one of `cycles:` (how many breaths) or `for:` (how long)")
            return None
        if BAD in got.values() or "in" not in got or "out" not in got:
            return None
        if "for" in got:  # `for:` makes cycles too: the same bound as `cycles:`
            cycle = got["in"] + (got.get("hold") or 0) + got["out"] + (got.get("hold_out") or 0)
            if got["for"] // cycle > S.MAX_REPEAT:
                self.error(f["for"].location, f"`for:` makes {got['for'] // cycle:,} breaths of "
                                              f"{cycle / 1000:g} s; a `breathe` has at most {S.MAX_REPEAT}")
                return None
        return Breathe(location, name, got["in"], got.get("hold") or 0, got["out"], got.get("hold_out") or 0,
                       got.get("cycles"), got.get("for"), got.get("voice"))

    def include(self, node: yamlsource.Node, location: Location, name: str | None, depth: int) -> Step | None:
        rel = self.value(S.STEP_KINDS["include"]["include"], node)
        if rel is BAD:
            return None
        key = (self.include_stack[-1], rel)
        if key not in self.targets:
            self.targets[key] = _include_target(self.root_dir, *key)
        target = self.targets[key]
        if isinstance(target, str):
            self.error(node.location, target)
            return None
        if target in self.include_stack:
            chain = " -> ".join(p.name for p in [*self.include_stack[self.include_stack.index(target):], target])
            self.error(node.location, f"include cycle: {chain}")
            return None
        if target not in self.parsed:
            display = os.path.normpath(os.path.join(os.path.dirname(node.location.file), rel))
            self.parsed[target] = self.read(target, display, node.location)
        root = self.parsed[target]
        if root is None:
            return None
        self.expanded += root.size
        if self.expanded > yamlsource.MAX_NODES:
            if self.expanded - root.size <= yamlsource.MAX_NODES:  # reported where first crossed
                self.error(node.location, "with its includes expanded the routine has more than "
                           f"{yamlsource.MAX_NODES:,} values; include fewer times, or use `repeat:`")
            return None
        self.include_stack.append(target)
        try:
            if root.is_seq:
                steps_node = root
            else:
                fields = self.mapping(root, {**S.TOP, "title": S.Field(S.TEXT, S.TOP["title"].doc)}, "an included routine")
                if fields is None:
                    return None
                if "steps" not in fields:
                    return None
                steps_node = fields["steps"]
            steps = self.steps(steps_node, depth + 1)
        finally:
            self.include_stack.pop()
        return Include(location, name, rel, steps) if steps else None


def _include_target(root_dir: Path, including: Path, rel: str) -> Path | str:
    """The real path `rel` names from the file `including`, or why it cannot be included."""
    if os.path.isabs(rel):
        return f"include `{rel}` must be a path relative to this file"
    if PATH_CONTROL.search(rel):  # no file system takes a NUL; no one means a line break
        return "an include path cannot contain control characters or line breaks"
    try:
        target = Path(os.path.realpath(including.parent / rel))
        if root_dir != target and root_dir not in target.parents:
            return f"include `{rel}` points outside the routine's folder"
        if not target.is_file():
            return f"include `{rel}`: no such file"
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"include `{short(rel)}`: {exc.strerror or exc}"
    return target
