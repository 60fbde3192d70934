"""Keys from a terminal: space, n/p, the arrows and q as player commands, read without echo or Enter."""

from __future__ import annotations

import enum
import os
import select
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol


class Command(enum.Enum):
    """What a key asks the player to do."""

    TOGGLE = "pause or resume"
    NEXT = "next chapter"
    BACK = "back"
    QUIT = "quit"


class Keys(Protocol):
    """A source of commands: waits up to `timeout` seconds, returns what came (maybe nothing)."""

    def read(self, timeout: float) -> list[Command]: ...


class NoKeys:
    """No controls (standard input is not a terminal): just wait."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep):
        self._sleep = sleep

    def read(self, timeout: float) -> list[Command]:
        self._sleep(timeout)
        return []


_SINGLE = {
    b" ": Command.TOGGLE,
    b"n": Command.NEXT, b"N": Command.NEXT,
    b"p": Command.BACK, b"P": Command.BACK,
    b"q": Command.QUIT, b"Q": Command.QUIT,
}
# Right and left arrow, in normal and in application cursor mode.
_SEQUENCES = {
    b"\x1b[C": Command.NEXT, b"\x1bOC": Command.NEXT,
    b"\x1b[D": Command.BACK, b"\x1bOD": Command.BACK,
}


class KeyDecoder:
    """Turns the bytes a terminal sends into commands; an escape sequence may arrive in pieces."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[Command]:
        data = self._pending + data
        self._pending = b""
        commands = []
        i = 0
        while i < len(data):
            if data[i:i + 1] != b"\x1b":
                command = _SINGLE.get(data[i:i + 1])
                if command is not None:
                    commands.append(command)
                i += 1
                continue
            rest = data[i:]
            if any(seq.startswith(rest) for seq in _SEQUENCES) and rest not in _SEQUENCES:
                self._pending = rest  # wait for the rest of the sequence
                break
            seq = rest[:3]
            if seq in _SEQUENCES:
                commands.append(_SEQUENCES[seq])
                i += 3
            else:
                i += self._skip_sequence(rest)
        return commands

    def flush(self) -> list[Command]:
        """A lone Escape that no sequence followed is nothing."""
        self._pending = b""
        return []

    @staticmethod
    def _skip_sequence(rest: bytes) -> int:
        """Length of an escape sequence we do not use (up/down arrows, F-keys...), so its letters are not keys."""
        if rest[1:2] in (b"[", b"O"):
            for j in range(2, len(rest)):
                if 0x40 <= rest[j] <= 0x7E:
                    return j + 1
            return len(rest)
        return 1


class TerminalKeys:
    """Commands typed on the terminal `fd` (already in cbreak mode, see `terminal_keys`)."""

    def __init__(self, fd: int):
        self._fd = fd
        self._decoder = KeyDecoder()
        self._closed = False

    def read(self, timeout: float) -> list[Command]:
        if self._closed:
            time.sleep(timeout)
            return []
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return self._decoder.flush()
        try:
            data = os.read(self._fd, 64)
        except OSError:
            data = b""
        if not data:
            # The terminal went away: play on without keys rather than spin on a dead descriptor.
            self._closed = True
            return []
        return self._decoder.feed(data)


@contextmanager
def terminal_keys(fd: int) -> Iterator[TerminalKeys]:
    """Read single keys from the terminal `fd` without echo; its settings are restored on the way out.

    cbreak rather than raw mode: Ctrl-C still raises KeyboardInterrupt, and
    output keeps its line endings (the display).
    """
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield TerminalKeys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
