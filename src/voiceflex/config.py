"""The user's standing choices: the config file, the command line's overrides, and which one wins."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import platformdirs

from voiceflex.errors import ConfigError, Diagnostic, Location, UsageError
from voiceflex.routine.model import BEDS, VoiceSettings
from voiceflex.routine.schema import VOICE_FIELDS

CONFIG_NAME = "config.toml"
MAX_CONFIG_BYTES = 64 * 1024  # a config is a few lines; refuse to read a huge file whole
# Words per minute, as routine files allow (docs/routine-format.md, `voice`).
RATES = (int(VOICE_FIELDS["rate"].min), int(VOICE_FIELDS["rate"].max))

# What each key means; the defaults apply when neither the command line, the
# routine nor the config file sets a key.
KEYS: dict[str, str] = {
    "engine": "speech engine (`voiceflex voices --engine NAME` lists its voices)",
    "voice": "voice id; used only with the engine chosen at the same level or below it",
    "rate": "words per minute, 80 to 400",
    "output": "folder `export` writes to",
    "bitrate": "MP3 bitrate, e.g. 64k",
    "music": "sound bed under exports and play: brown-noise, rain, drone, none, or a sound file",
}
DEFAULTS: dict[str, Any] = {
    "engine": "pyttsx3", "voice": None, "rate": 160, "output": "audio", "bitrate": "64k", "music": None,
}
# The routine's `voice:` keys that stand for settings here.
_ROUTINE_KEYS = {"engine": "engine", "voice": "id", "rate": "rate"}
_TOML_POSITION = re.compile(r"^(?P<message>.*?) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$",
                            re.DOTALL)


def config_path() -> Path:
    """VOICEFLEX_CONFIG_DIR/config.toml if that is set, else config.toml in the user's config folder."""
    folder = os.environ.get("VOICEFLEX_CONFIG_DIR")
    if folder:
        return Path(folder) / CONFIG_NAME
    return Path(platformdirs.user_config_dir("voiceflex")) / CONFIG_NAME


@dataclass(frozen=True)
class Choice:
    """One effective setting and where it came from: "cli", "routine", "config" or "default"."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Settings:
    """The choices a command runs with: its command line over the config file over the defaults.

    The routine file sits between the command line and the config file; its
    voice is merged in by `voice_for`.
    """

    cli: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    file: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None  # the config file looked for (it may not exist)
    places: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))  # key -> line, column

    @classmethod
    def load(cls, path: Path | None = None, **cli: Any) -> Settings:
        """The config file at `path` (default: config_path()) under the command line's non-None values."""
        path = config_path() if path is None else path
        values, places = read_config(path)
        given = {k: v for k, v in cli.items() if v is not None}
        unknown = set(given) - set(KEYS)
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        return cls(MappingProxyType(given), MappingProxyType(values), path, MappingProxyType(places))

    def choice(self, key: str) -> Choice:
        """A setting without the routine's say: the command line's, else the config file's, else the default."""
        if key in self.cli:
            return Choice(key, self.cli[key], "cli")
        if key in self.file:
            return Choice(key, self.file[key], "config")
        return Choice(key, DEFAULTS[key], "default")

    @property
    def output(self) -> Path:
        return Path(self.choice("output").value)

    @property
    def bitrate(self) -> str:
        return str(self.choice("bitrate").value)

    @property
    def music(self) -> str | None:
        """A built-in bed name, "none" (no bed, even where a routine has one), a sound file, or None (unset)."""
        return self.choice("music").value

    def music_for(self, routine_sound: str | None) -> str | None:
        """The bed for a routine whose `background.sound` is `routine_sound`: None keeps the routine's own.

        `--music` beats the routine, and the routine beats the config file's `music`.
        """
        chosen = self.choice("music")
        return chosen.value if chosen.source == "cli" or routine_sound is None else None

    def voice_for(self, voice: VoiceSettings) -> VoiceSettings:
        """The routine's voice settings with the command line and config file applied (docs/config.md, "Which setting wins").

        A voice id belongs to the engine: it is kept only when it was chosen at
        the same level as the engine or a higher one, so `--engine piper` drops
        the routine's espeak voice and takes Piper's voice for the language.
        """
        chosen = self.voice_choices(voice)
        engine, voice_id, rate = chosen["engine"], chosen["voice"], chosen["rate"]
        if voice_id.source == "routine":
            location = voice.location
        elif voice_id.source == "config":
            location = self.where("voice")
        else:  # from the command line (a usage error if unknown), or the language's voice
            location = voice.language_location if voice_id.value is None else None
        return replace(voice, engine=engine.value, id=voice_id.value, rate=rate.value, location=location)

    def voice_choices(self, voice: VoiceSettings | None = None) -> dict[str, Choice]:
        """engine, voice and rate as chosen over every level, `voice` being the routine's (if any)."""
        routine = {} if voice is None else {
            key: getattr(voice, attr) for key, attr in _ROUTINE_KEYS.items() if attr in voice.given}
        levels = [("cli", self.cli), ("routine", routine), ("config", self.file)]

        def pick(key: str, lowest: int = len(levels)) -> Choice:
            for source, values in levels[:lowest]:
                if key in values:
                    return Choice(key, values[key], source)
            return Choice(key, DEFAULTS[key], "default")

        engine = pick("engine")
        engine_level = next((i for i, (source, _) in enumerate(levels) if source == engine.source), len(levels))
        return {"engine": engine, "voice": pick("voice", engine_level + 1), "rate": pick("rate")}

    def where(self, key: str) -> Location | None:
        """Where the config file sets `key`, for messages."""
        if self.path is None or key not in self.file:
            return None
        return Location(str(self.path), *self.places.get(key, (1, 1)))

    def describe(self, choice: Choice, routine_file: str | None = None) -> str:
        """Where a choice came from, as `voiceflex config` shows it."""
        if choice.source == "cli":
            return f"command line (--{choice.key})"
        if choice.source == "routine":
            return f"routine {routine_file}"
        if choice.source == "config":
            return f"config {self.where(choice.key)}"
        return "default"


def read_config(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """The checked settings of the config file at `path` and where each is; ({}, {}) if there is none.

    Raises ConfigError with every problem, each at FILE:LINE:COL.
    """
    shown = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise ConfigError([Diagnostic(Location(shown, 1, 1), f"cannot read the config file: {exc.strerror or exc}")])
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([Diagnostic(Location(shown, 1, 1),
                                      f"the config file is larger than {MAX_CONFIG_BYTES // 1024} KB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Diagnostic(_offset_location(shown, data, exc.start),
                                      "the config file is not UTF-8 text; save it as UTF-8")]) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_error(shown, text, str(exc))]) from None
    places = {key: _line_of(text, key) for key in document}
    problems: list[Diagnostic] = []
    values: dict[str, Any] = {}
    for key, raw in document.items():
        at = Location(shown, *places[key])
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else f" (keys: {', '.join(KEYS)})"
            problems.append(Diagnostic(at, f"unknown key `{key}` in the config file{hint}"))
            continue
        try:
            values[key] = _CHECKS[key](raw, path.parent)
        except ValueError as exc:
            problems.append(Diagnostic(at, f"`{key}`: {exc}"))
    if problems:
        raise ConfigError(problems)
    return values, places


# ---- checks of each key's value (ValueError: what is wrong, for the user) ---------


def check_engine(value: Any, engines: list[str] | None = None) -> str:
    """An engine name voice.synthesis knows; ValueError naming the ones there are."""
    if engines is None:
        from voiceflex.voice.synthesis import ENGINES

        engines = list(ENGINES)
    if not isinstance(value, str):
        raise ValueError(f"expected the name of a speech engine, got {_kind(value)}")
    if value not in engines:
        close = difflib.get_close_matches(value, engines, n=1, cutoff=0.6)
        did = f"; did you mean `{close[0]}`?" if close else ""
        raise ValueError(f"unknown engine `{value}`{did} (engines: {', '.join(engines)})")
    return value


def _check_voice(value: Any, _folder: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a voice id as text, got {_kind(value)}")
    return value.strip()


def check_rate(value: Any) -> int:
    """Words per minute as a whole number in RATES; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected words per minute as a whole number, got {_kind(value)}")
    low, high = RATES
    if not low <= value <= high:
        raise ValueError(f"{value} words per minute is out of range: must be from {low} to {high}")
    return value


def _check_output(value: Any, folder: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a folder as text, got {_kind(value)}")
    return str(_path(value, folder))


def _check_bitrate(value: Any, _folder: Path) -> str:
    from voiceflex.audio.output_format import parse_bitrate

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f'expected a bitrate such as "64k", got {_kind(value)}')
    try:
        return f"{parse_bitrate(value)}k"
    except UsageError as exc:
        raise ValueError(f"{exc}; {exc.hint}" if exc.hint else str(exc)) from None


def _check_music(value: Any, folder: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'expected a built-in bed ({", ".join(BEDS)}), "none" or a sound file, got {_kind(value)}')
    if value.strip().lower() in (*BEDS, "none"):
        return value.strip().lower()
    path = _path(value, folder)
    if not path.is_file():
        close = difflib.get_close_matches(value.strip().lower(), BEDS, n=1, cutoff=0.6)
        did = f"did you mean `{close[0]}`? " if close else ""
        raise ValueError(f"no sound file {path}; {did}the built-in beds are {', '.join(BEDS)}, and \"none\" plays none")
    return str(path)


_CHECKS = {
    "engine": lambda value, _folder: check_engine(value),
    "voice": _check_voice,
    "rate": lambda value, _folder: check_rate(value),
    "output": _check_output,
    "bitrate": _check_bitrate,
    "music": _check_music,
}


# ---- helpers ---------------------------------------------------------------------


def _path(value: str, folder: Path) -> Path:
    """A path from the config file: `~` expanded, a relative one taken from the config file's folder."""
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else folder / path


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "empty text" if not value.strip() else "text"
    return "a list" if isinstance(value, list) else "a table" if isinstance(value, dict) else type(value).__name__


def _line_of(text: str, key: str) -> tuple[int, int]:
    """The line and column that set top-level `key` (`key = ...`, `"key" = ...` or a `[key]` table), else 1."""
    name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    pattern = re.compile(rf"^\s*(?:{name}\s*[=.]|\[\[?\s*{name}\s*[\].])")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number, len(line) - len(line.lstrip()) + 1
    return 1, 1


def _syntax_error(shown: str, text: str, message: str) -> Diagnostic:
    """tomllib's message "Invalid value (at line 3, column 9)" as a located diagnostic with a hint."""
    match = _TOML_POSITION.match(message)
    if match is None:
        return Diagnostic(Location(shown, 1, 1), f"not valid TOML: {message}")
    if match["line"]:
        line, col = int(match["line"]), int(match["col"])
    else:  # at the end of the document
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
    what = match["message"]
    hint = ""
    lines = text.splitlines()
    at = lines[line - 1][col - 1:col] if line <= len(lines) else ""
    if what == "Invalid value" and at.isalpha():  # an unquoted word
        hint = '; text goes in quotes, e.g. engine = "piper"'
    elif what.startswith("Expected '=' after a key"):
        hint = "; each line is `key = value`"
    elif what == "Cannot overwrite a value":
        hint = "; each key may be set once"
    return Diagnostic(Location(shown, line, col), f"not valid TOML: {what[:1].lower()}{what[1:]}{hint}")


def _offset_location(shown: str, data: bytes, offset: int) -> Location:
    before = data[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return Location(shown, line, column)
