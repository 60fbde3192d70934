"""Load a routine file: YAML nodes checked against the schema into the model, includes resolved."""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any

from voiceflex.errors import Diagnostic, Location, RoutineError
from voiceflex.routine import schema as S
from voiceflex.routine import yamlsource
from voiceflex.routine.durations import MS_PER_HOUR, parse_ms
from voiceflex.routine.model import (
    BEDS, DEFAULT_TONES, GLIDES, Background, Breathe, Cue, Hold, Include, Pause, PlayTone, Repeat, Routine, Say,
    Sides, Step, Text, ToneSpec, VoiceSettings,
)
from voiceflex.spoken import has_words

PLACEHOLDERS = ("side", "round", "rounds", "seconds", "duration")
MAX_INCLUDE_DEPTH = 16
PLACEHOLDER_PATTERN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BAD = object()  # a value that failed its check (already reported)


def read_routine(path: Path, display: str | None = None) -> tuple[Routine, list[Diagnostic]]:
    """The routine in `path` and every problem found in it and its includes.

    With problems, the routine holds what could be read (bad steps left out),
    so the compiler can still look for the errors it alone can see.
    """
    loader = _Loader(root_dir=Path(os.path.realpath(path)).parent)
    routine = loader.load_root(Path(path), display or str(path))
    # A file included several times reports each of its problems once.
    return routine, list(dict.fromkeys(loader.diagnostics))


def suggest(word: str, choices: Any) -> str:
    """`; did you mean `x`?` when a choice is close to `word`, else empty."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _short(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters for a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "a mapping"


class _Loader:
    def __init__(self, root_dir: Path):
        self.root_dir = root_dir
        self.diagnostics: list[Diagnostic] = []
        self.include_stack: list[Path] = []
        self.tone_names: set[str] = set(DEFAULT_TONES)
        # Each file is parsed once however often it is included, and the values
        # of the routine with every include expanded are counted as they are
        # expanded: 6 small files including each other 20 times would expand to
        # millions of steps.
        self.parsed: dict[Path, yamlsource.Node | None] = {}
        # Where each include path leads from its file, or why it cannot be
        # followed: asked of the file system once, not at every expansion.
        self.targets: dict[tuple[Path, str], Path | str] = {}
        self.expanded = 0
        self.sources: list[tuple[str, str]] = []  # (real path, sha256 of its bytes), as read

    # ---- files ------------------------------------------------------------

    def error(self, location: Location, message: str) -> Any:
        self.diagnostics.append(Diagnostic(location, message))
        return _BAD

    def read(self, path: Path, display: str, where: Location | None) -> yamlsource.Node | None:
        try:
            with open(path, "rb") as f:
                # One byte past the limit tells a file is too big: reading all of
                # a huge file before refusing it would take its size in memory.
                data = f.read(yamlsource.MAX_FILE_BYTES + 1)
                size = os.fstat(f.fileno()).st_size
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.error(where or Location(display, 1, 1), f"cannot read {display}: {reason}")
            return None
        self.sources.append((os.path.realpath(path), hashlib.sha256(data).hexdigest()))
        try:
            text = yamlsource.decode(data, display, size=size)
            return yamlsource.parse(text, display, problems=self.diagnostics)
        except RoutineError as exc:
            self.diagnostics.extend(exc.diagnostics)
            return None

    def load_root(self, path: Path, display: str) -> Routine:
        self.include_stack.append(Path(os.path.realpath(path)))
        node = self.read(path, display, None)
        if node is None:
            return Routine(title="", steps=(), file=display)
        self.expanded = node.size
        fields = self.mapping(node, S.TOP, "a routine")
        if fields is None:
            return Routine(title="", steps=(), file=display)
        language = self.value(S.TOP["language"], fields.get("language")) or "en-us"
        voice = self.voice(fields.get("voice"), language,
                           fields["language"].location if "language" in fields else None)
        tones = self.tones(fields.get("tones"))
        background = self.background(fields.get("background"))
        steps = self.steps(fields["steps"], depth=0) if "steps" in fields else ()
        title = self.value(S.TOP["title"], fields.get("title"))
        announce = self.value(S.TOP["announce"], fields.get("announce")) is True
        if announce and isinstance(language, str) and not language.lower().startswith("en"):
            self.error(fields["announce"].location, f"`announce` speaks English words; this routine's "
                                                    f"language is {language} (write the cues as `say:` instead)")
        return Routine(
            title=title.text if isinstance(title, Text) else "",
            description=self.value(S.TOP["description"], fields.get("description")),
            author=self.value(S.TOP["author"], fields.get("author")),
            steps=steps, file=display, voice=voice, tones=tones, background=background,
            announce=announce, sources=tuple(self.sources),
        )

    # ---- mappings and values ----------------------------------------------

    def mapping(self, node: yamlsource.Node, fields: dict[str, S.Field], what: str,
                extra: dict[str, S.Field] | None = None) -> dict[str, yamlsource.Node] | None:
        """Key -> value node of a mapping, after reporting unknown and missing keys."""
        if not node.is_map:
            self.error(node.location, f"{what} must be a mapping (`key: value` lines), not {_kind_of(node.value)}")
            return None
        allowed = {**fields, **(extra or {})}
        out = {}
        for key, (key_node, value_node) in node.value.items():
            if key in allowed:
                out[key] = value_node
            else:
                self.error(key_node.location, f"unknown key `{key}` in {what}{suggest(key, allowed)}")
        for key, field in fields.items():
            if field.required and key not in out:
                self.error(node.location, f"{what} needs `{key}:`")
        return out

    def value(self, field: S.Field, node: yamlsource.Node | None) -> Any:
        """The checked value of `node`, None when absent, _BAD (reported) when wrong."""
        if node is None:
            return None
        v, loc, t = node.value, node.location, field.type
        if t in (S.TEXT, S.STRING, S.TONE_NAME, S.PATH, S.ENGINE):
            if not isinstance(v, str):
                hint = f'; quote it: "{v}"' if isinstance(v, (int, float)) else ""
                return self.error(loc, f"expected text, got {_kind_of(v)}{hint}")
            if t == S.STRING:
                # Into the ID3 tags as they are: a NUL there splits one artist into two.
                return self.no_control(v, loc)
            if not v.strip():
                return self.error(loc, "text must not be empty")
            if t == S.TEXT:
                return self.text(v, loc)
            if t == S.TONE_NAME and v not in self.tone_names:
                return self.error(loc, f"unknown tone `{v}`{suggest(v, self.tone_names)} "
                                       f"(tones: {', '.join(sorted(self.tone_names))})")
            if t == S.ENGINE and v not in S.ENGINES:
                return self.error(loc, f"unknown engine `{v}`{suggest(v, S.ENGINES)} (engines: {', '.join(S.ENGINES)})")
            return v
        if t in (S.DURATION, S.DURATION0, S.OFFSET):
            try:
                ms = parse_ms(v, signed=t == S.OFFSET)
            except ValueError as exc:
                return self.error(loc, str(exc))
            if ms < 0 and t != S.OFFSET:
                return self.error(loc, "a duration cannot be negative")
            if ms == 0 and t == S.DURATION:
                return self.error(loc, "a duration here must be longer than 0")
            if abs(ms) > S.MAX_HOURS * MS_PER_HOUR:
                return self.error(loc, f"a duration cannot exceed {S.MAX_HOURS} hours")
            return ms
        if t in (S.INT, S.NUMBER):
            ok = isinstance(v, int) if t == S.INT else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
                return self.error(loc, f"expected {'a whole number' if t == S.INT else 'a number'}, got {_kind_of(v)}")
            if (field.min is not None and v < field.min) or (field.max is not None and v > field.max):
                return self.error(loc, f"{v} is out of range: must be from {field.min:g} to {field.max:g}")
            return v
        if t == S.BOOL:
            if not isinstance(v, bool):
                return self.error(loc, f"expected true or false, got {_kind_of(v)}")
            return v
        raise AssertionError(t)  # pragma: no cover - composite types have their own methods

    def no_control(self, raw: str, loc: Location) -> str | Any:
        """`raw`, or _BAD (reported) when it holds a control character."""
        bad = _CONTROL.search(raw)
        if bad:
            return self.error(loc, f"text contains the control character U+{ord(bad.group()):04X}")
        return raw

    def text(self, raw: str, loc: Location) -> Text | Any:
        if len(raw) > S.MAX_TEXT:
            return self.error(loc, f"text is {len(raw)} characters; a cue may have at most {S.MAX_TEXT}")
        if self.no_control(raw, loc) is _BAD:
            return _BAD
        for match in PLACEHOLDER_PATTERN.finditer(raw):
            token, name = match.group(), match.group(1)
            if token in ("{{", "}}"):
                continue
            if name is None:
                return self.error(loc, f"stray `{token}` in text; write `{token}{token}` for a literal brace")
            if name not in PLACEHOLDERS:
                return self.error(loc, f"unknown placeholder `{{{name}}}`{suggest(name, PLACEHOLDERS)} "
                                       f"(placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        return Text(" ".join(raw.split()), loc)

    # ---- top-level parts ----------------------------------------------------

    def voice(self, node: yamlsource.Node | None, language: Any, language_at: Location | None) -> VoiceSettings:
        language = language if isinstance(language, str) and language.strip() else "en-us"
        if node is None:
            return VoiceSettings(language=language, location=language_at, language_location=language_at)
        fields = self.mapping(node, S.VOICE_FIELDS, "`voice`") or {}
        got = {k: self.value(S.VOICE_FIELDS[k], n) for k, n in fields.items()}
        got = {k: v for k, v in got.items() if v is not None and v is not _BAD}
        voice_id = got.get("id")
        return VoiceSettings(
            engine=got.get("engine", "pyttsx3"),
            id=voice_id.text if isinstance(voice_id, Text) else None,
            rate=got.get("rate", 160),
            gap_ms=got.get("gap", 400),
            language=language,
            location=voice_id.location if isinstance(voice_id, Text) else language_at,
            given=frozenset(k for k in ("engine", "id", "rate") if k in got),
            language_location=language_at,
        )

    def tones(self, node: yamlsource.Node | None) -> dict[str, ToneSpec]:
        tones = dict(DEFAULT_TONES)
        if node is None:
            return tones
        if not node.is_map:
            self.error(node.location, f"`tones` must be a mapping of tone names, not {_kind_of(node.value)}")
            return tones
        for name, (key_node, spec_node) in node.value.items():
            fields = self.mapping(spec_node, S.TONE_FIELDS, f"tone `{name}`")
            if fields is None:
                continue
            base = DEFAULT_TONES.get(name)
            freq = self.freq(fields.get("freq"), glide=name in GLIDES)
            ms = self.value(S.TONE_FIELDS["ms"], fields.get("ms"))
            db = self.value(S.TONE_FIELDS["db"], fields.get("db"))
            missing = [k for k, v in (("freq", freq), ("ms", ms)) if v is None]
            if base is None and missing:
                self.error(spec_node.location, f"new tone `{name}` needs {' and '.join(f'`{k}:`' for k in missing)}")
                continue
            if _BAD in (freq, ms, db):
                continue
            if freq is None:
                freq = (base.freq, base.freq_end) if base.is_glide else base.freq
            start, end = freq if isinstance(freq, tuple) else (freq, None)
            self.tone_names.add(name)
            tones[name] = ToneSpec(
                freq=float(start), freq_end=None if end is None else float(end),
                ms=ms or (base.ms if base else 0),
                db=float(db) if db is not None else (base.db if base else -14.0),
            )
        return tones

    def background(self, node: yamlsource.Node | None) -> Background | None:
        if node is None:
            return None
        fields = self.mapping(node, S.BACKGROUND_FIELDS, "`background`")
        if fields is None:
            return None
        got = {k: self.value(S.BACKGROUND_FIELDS[k], n) for k, n in fields.items()}
        sound = got.get("sound")
        if sound is None or sound is _BAD:
            return None
        if sound not in BEDS:
            sound = self.local_file(fields["sound"], sound, "background sound")
        if sound is None or _BAD in got.values():
            return None
        return Background(sound, float(got.get("level", -20.0)), float(got.get("duck", 12.0)),
                          bool(got.get("duck_tones", False)), fields["sound"].location)

    def local_file(self, node: yamlsource.Node, rel: str, what: str) -> str | None:
        """The real path of `rel`, a file relative to the routine and inside its folder tree."""
        beds = ", ".join(BEDS)
        problem = None
        if os.path.isabs(rel):
            problem = f"{what} `{_short(rel)}` must be a path relative to this file (or a built-in bed: {beds})"
        elif _PATH_CONTROL.search(rel):
            problem = f"a {what} path cannot contain control characters or line breaks"
        else:
            try:
                target = Path(os.path.realpath(self.include_stack[-1].parent / rel))
                if self.root_dir != target and self.root_dir not in target.parents:
                    problem = f"{what} `{_short(rel)}` points outside the routine's folder"
                elif not target.is_file():
                    problem = f"{what} `{_short(rel)}`: no such file{suggest(rel, BEDS) or f' (built-in beds: {beds})'}"
            except OSError as exc:
                problem = f"{what} `{_short(rel)}`: {exc.strerror or exc}"
        if problem is not None:
            self.error(node.location, problem)
            return None
        return str(target)

    def freq(self, node: yamlsource.Node | None, glide: bool) -> Any:
        if node is None:
            return None
        hz = S.Field(S.NUMBER, "", min=40, max=8000)
        if glide:
            if not node.is_seq or len(node.value) != 2:
                return self.error(node.location, "a glide's `freq` is a pair [start, end], e.g. [330, 495]")
            pair = tuple(self.value(hz, n) for n in node.value)
            return _BAD if _BAD in pair else pair
        if node.is_seq:
            return self.error(node.location, "only the inhale/exhale glides take a pair of frequencies")
        return self.value(hz, node)

    # ---- steps --------------------------------------------------------------

    def steps(self, node: yamlsource.Node, depth: int) -> tuple[Step, ...]:
        if not node.is_seq:
            self.error(node.location, f"`steps` must be a list (lines starting with `- `), not {_kind_of(node.value)}")
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
            self.error(node.location, f"a step must be a mapping such as `say: ...`, not {_kind_of(node.value)}{hint}")
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
            return None if text is _BAD else Say(location, name, text)
        if kind == "pause":
            ms = get("pause")
            return None if ms is _BAD else Pause(location, name, ms)
        if kind == "tone":
            tone = get("tone")
            return None if tone is _BAD else PlayTone(location, name, tone)
        if kind in ("hold", "rest"):
            return self.hold(kind, f, location, name)
        if kind == "sides":
            return self.sides(f, location, name, depth)
        if kind == "repeat":
            count, rest = get("repeat"), get("rest")
            steps = self.steps(f["steps"], depth + 1) if "steps" in f else ()
            if _BAD in (count, rest) or not steps:
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
        if _BAD in got.values():
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
            self.error(node.location, f"`cues` must be a list of {{at: ..., say: ...}} entries, not {_kind_of(node.value)}")
            return ()
        out = []
        for item in node.value:
            f = self.mapping(item, S.CUE_FIELDS, "a cue")
            if f is None:
                continue
            got = {k: self.value(S.CUE_FIELDS[k], n) for k, n in f.items()}
            if ("say" in f) == ("tone" in f):
                self.error(item.location, "a cue needs exactly one of `say:` or `tone:`")
            elif _BAD not in got.values() and "at" in got:
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
                    self.error(item.location, f"a side name must be text, not {_kind_of(item.value)}")
                elif len(item.value) > S.MAX_TEXT or _CONTROL.search(item.value):
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
        if switch is _BAD or not names or not steps or len(names) != len(node.value):
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
        if _BAD in got.values() or "in" not in got or "out" not in got:
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
        if rel is _BAD:
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
        if len(self.include_stack) > MAX_INCLUDE_DEPTH:
            self.error(node.location, f"includes nested more than {MAX_INCLUDE_DEPTH} deep")
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
    if _PATH_CONTROL.search(rel):  # no file system takes a NUL; no one means a line break
        return "an include path cannot contain control characters or line breaks"
    try:
        target = Path(os.path.realpath(including.parent / rel))
        if root_dir != target and root_dir not in target.parents:
            return f"include `{rel}` points outside the routine's folder"
        if not target.is_file():
            return f"include `{rel}`: no such file"
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"include `{_short(rel)}`: {exc.strerror or exc}"
    return target
