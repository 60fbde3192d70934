"""Standard output and error that degrade instead of failing: closed, full, or in a non-UTF-8 locale."""

from __future__ import annotations

import io
import os
import sys

from voiceflex.errors import OutputError


class _Raw(io.RawIOBase):
    """A standard stream's file descriptor whose write failures are decided here.

    Standard output: a failed write (a full device, an I/O error) is an
    OutputError, reported once; what follows goes nowhere.  A reader that left
    (EPIPE) stays a BrokenPipeError, which the CLI takes as the user's doing.
    Standard error: a failed write is dropped, since an error message that
    cannot be shown must not change the outcome of the work.
    """

    def __init__(self, fd: int, strict: bool):
        super().__init__()
        self.fd = fd
        self.strict = strict

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data) -> int:  # type: ignore[override]
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            if self.strict:
                raise
        except OSError as exc:
            _to_devnull(self.fd)
            if self.strict:
                raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None
        return len(data)


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def _wrap(old: io.TextIOBase | None, fd: int, strict: bool) -> io.TextIOWrapper:
    encoding = getattr(old, "encoding", None) or "utf-8"
    line_buffering = bool(getattr(old, "line_buffering", True))
    return io.TextIOWrapper(io.BufferedWriter(_Raw(fd, strict)), encoding=encoding, errors="replace",
                            line_buffering=line_buffering or not strict)


def prepare() -> None:
    """Make standard output and error safe to write to, whatever they are.

    A closed descriptor 0, 1 or 2 gets /dev/null, so the files voiceflex opens
    never take its number (and the programs it starts find one there).  Text
    the locale cannot encode (an ISO-8859-1 terminal, a non-Latin title) is
    written with replacement characters.  Streams someone else replaced (a
    test's capture) are left alone.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if opened != fd:  # pragma: no cover - only when a lower one closed meanwhile
                os.dup2(opened, fd)
                os.close(opened)
    if sys.stdout is None or sys.stdout is sys.__stdout__:
        sys.stdout = sys.__stdout__ = _wrap(sys.stdout, 1, strict=True)
    if sys.stderr is None or sys.stderr is sys.__stderr__:
        sys.stderr = sys.__stderr__ = _wrap(sys.stderr, 2, strict=False)


def finish(status: int) -> int:
    """`status`, after what is left of standard output is written (1 if it cannot be)."""
    try:
        sys.stdout.flush()
    except OutputError as exc:
        print(f"voiceflex: {exc}", file=sys.stderr)
        return status or exc.exit_code
    except BrokenPipeError:  # the reader left: nothing is wrong
        _to_devnull(sys.stdout.fileno())
    return status
