"""Load a routine file: YAML nodes checked against the schema into the model, includes resolved."""

from __future__ import annotations

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
from voiceflex.routine.model import BEDS, DEFAULT_TONES, GLIDES, Background, Routine, Text, ToneSpec, VoiceSettings
from voiceflex.routine.steps import StepReader
from voiceflex.routine.values import BAD, CONTROL, PATH_CONTROL, kind_of, short, suggest

PLACEHOLDERS = ("side", "round", "rounds", "seconds", "duration")
PLACEHOLDER_PATTERN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def read_routine(path: Path, display: str | None = None) -> tuple[Routine, list[Diagnostic]]:
    """The routine in `path` and every problem found in it and its includes.

    With problems, the routine holds what could be read (bad steps left out),
    so the compiler can still look for the errors it alone can see.
    """
    loader = _Loader(root_dir=Path(os.path.realpath(path)).parent)
    routine = loader.load_root(Path(path), display or str(path))
    # A file included several times reports each of its problems once.
    return routine, list(dict.fromkeys(loader.diagnostics))


class _Loader(StepReader):
    """Reads the top level of a routine (files, values, voice, tones, background); StepReader reads its steps."""

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
        return BAD

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
            self.error(node.location, f"{what} must be a mapping (`key: value` lines), not {kind_of(node.value)}")
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
        """The checked value of `node`, None when absent, BAD (reported) when wrong."""
        if node is None:
            return None
        v, loc, t = node.value, node.location, field.type
        if t in (S.TEXT, S.STRING, S.TONE_NAME, S.PATH, S.ENGINE):
            if not isinstance(v, str):
                hint = f'; quote it: "{v}"' if isinstance(v, (int, float)) else ""
                return self.error(loc, f"expected text, got {kind_of(v)}{hint}")
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
                return self.error(loc, f"expected {'a whole number' if t == S.INT else 'a number'}, got {kind_of(v)}")
            if (field.min is not None and v < field.min) or (field.max is not None and v > field.max):
                return self.error(loc, f"{v} is out of range: must be from {field.min:g} to {field.max:g}")
            return v
        if t == S.BOOL:
            if not isinstance(v, bool):
                return self.error(loc, f"expected true or false, got {kind_of(v)}")
            return v
        raise AssertionError(t)  # pragma: no cover - composite types have their own methods

    def no_control(self, raw: str, loc: Location) -> str | Any:
        """`raw`, or BAD (reported) when it holds a control character."""
        bad = CONTROL.search(raw)
        if bad:
            return self.error(loc, f"text contains the control character U+{ord(bad.group()):04X}")
        return raw

    def text(self, raw: str, loc: Location) -> Text | Any:
        if len(raw) > S.MAX_TEXT:
            return self.error(loc, f"text is {len(raw)} characters; a cue may have at most {S.MAX_TEXT}")
        if self.no_control(raw, loc) is BAD:
            return BAD
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
        got = {k: v for k, v in got.items() if v is not None and v is not BAD}
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
            self.error(node.location, f"`tones` must be a mapping of tone names, not {kind_of(node.value)}")
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
            if BAD in (freq, ms, db):
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
        if sound is None or sound is BAD:
            return None
        if sound not in BEDS:
            sound = self.local_file(fields["sound"], sound, "background sound")
        if sound is None or BAD in got.values():
            return None
        return Background(sound, float(got.get("level", -20.0)), float(got.get("duck", 12.0)),
                          bool(got.get("duck_tones", False)), fields["sound"].location)

    def local_file(self, node: yamlsource.Node, rel: str, what: str) -> str | None:
        """The real path of `rel`, a file relative to the routine and inside its folder tree."""
        beds = ", ".join(BEDS)
        problem = None
        if os.path.isabs(rel):
            problem = f"{what} `{short(rel)}` must be a path relative to this file (or a built-in bed: {beds})"
        elif PATH_CONTROL.search(rel):
            problem = f"a {what} path cannot contain control characters or line breaks"
        else:
            try:
                target = Path(os.path.realpath(self.include_stack[-1].parent / rel))
                if self.root_dir != target and self.root_dir not in target.parents:
                    problem = f"{what} `{short(rel)}` points outside the routine's folder"
                elif not target.is_file():
                    problem = f"{what} `{short(rel)}`: no such file{suggest(rel, BEDS) or f' (built-in beds: {beds})'}"
            except OSError as exc:
                problem = f"{what} `{short(rel)}`: {exc.strerror or exc}"
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
            return BAD if BAD in pair else pair
        if node.is_seq:
            return self.error(node.location, "only the inhale/exhale glides take a pair of frequencies")
        return self.value(hz, node)
