"""The one exception hierarchy of voiceflex, and the exit status of each kind."""

from __future__ import annotations

from dataclasses import dataclass

# Exit statuses (README, "Exit status").  Defined here once; the CLI only looks them up.
EXIT_OK = 0
EXIT_FAILURE = 1  # engine, encoder, device, anything not the user's input
EXIT_BAD_INPUT = 2  # routine files, arguments


@dataclass(frozen=True)
class Location:
    """A place in a routine file; line and column count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a routine file."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class VoiceflexError(Exception):
    """Base of every error voiceflex reports to its user."""

    exit_code = EXIT_FAILURE
    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UsageError(VoiceflexError):
    """The command line asked for something that does not exist or fit."""

    exit_code = EXIT_BAD_INPUT


class UnknownVoiceError(UsageError):
    """The routine asks for a voice or language the speech engine does not have."""


class RoutineError(VoiceflexError):
    """A routine file (or one it includes) is not valid; carries every problem found."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(
            diagnostics,
            key=lambda d: (d.location.file, d.location.line, d.location.column),
        )
        first = self.diagnostics[0]
        more = len(self.diagnostics) - 1
        super().__init__(str(first) + (f" (and {more} more)" if more else ""))


class ConfigError(RoutineError):
    """The user's config file (voiceflex/config.toml) is not valid; carries every problem found."""


class MissingComponentError(VoiceflexError):
    """A system program or library voiceflex needs is not installed."""


class EngineError(VoiceflexError):
    """Speech synthesis failed; `cue` is the text it failed on, when it failed on one."""

    def __init__(self, message: str, hint: str | None = None, cue: str | None = None):
        super().__init__(message, hint)
        self.cue = cue


class EncoderError(VoiceflexError):
    """Writing an audio file failed."""


class DeviceError(VoiceflexError):
    """No usable sound output."""


class OutputError(VoiceflexError):
    """Standard output cannot be written (a full device, an I/O error)."""


class ServeError(VoiceflexError):
    """The server could not start: its address is taken or not this machine's, or its token cannot be kept."""


def format_diagnostics(exc: RoutineError, *, caret: bool = False) -> str:
    """The problems of `exc` as the CLI shows them, one `FILE:LINE:COL: message` a line.

    With `caret`, each is followed by its source line and a ^ under the column.
    """
    lines = []
    for d in exc.diagnostics:
        lines.append(str(d))
        source = _source_line(d.location.file, d.location.line) if caret else None
        if source is not None:
            lines.append(f"    {source}")
            lines.append(f"    {' ' * (d.location.column - 1)}^")
    if len(exc.diagnostics) > 1:
        lines.append(f"{len(exc.diagnostics)} errors")
    return "".join(line + "\n" for line in lines)


def _source_line(file: str, number: int) -> str | None:
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if i == number:
                    return line.rstrip("\n")
    except OSError:
        pass
    return None
