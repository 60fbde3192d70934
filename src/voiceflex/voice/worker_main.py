"""Runs as every worker process: builds the backend, answers the pool's requests; the message framing both ends use.

Imports only small parts of the standard library (no multiprocessing, no
voiceflex beyond this package): a pyttsx3 worker forks a child per cue, and a
fork costs about in proportion to the memory the worker has written
(docs/voices.md, "Reproducible rendering").
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import struct

_LENGTH = struct.Struct("!Q")  # each message: its length, then its pickle


def send(fd: int, message: object) -> None:
    """Write `message` to the socket `fd` as one framed pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _LENGTH.pack(len(data)))
    _write_all(fd, data)


def recv(fd: int) -> object:
    """The next message on the socket `fd`; EOFError if the other end closed it."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    return pickle.loads(_read_exactly(fd, length))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        n = os.readv(fd, [view[done:]])
        if n == 0:
            raise EOFError("the other end closed the connection")
        done += n
    return buffer


def main(fd: int, backend_spec: str) -> None:
    """The worker process: build the backend, then answer requests until the parent goes away."""
    # Ctrl-C reaches the whole process group; the parent decides and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    module_name, _, class_name = backend_spec.partition(":")
    try:
        backend = getattr(importlib.import_module(module_name), class_name)()
        broken = None
    except Exception as e:  # reported for every request: the parent names the cue
        backend, broken = None, describe(e)
    while True:
        try:
            method, *args = recv(fd)
        except (EOFError, OSError):
            return
        if broken is not None:
            reply = ("error", broken)
        elif method.startswith("_") or not hasattr(backend, method):
            reply = ("error", f"the speech process has no {method!r}")
        else:
            try:
                reply = ("ok", getattr(backend, method)(*args))
            except Exception as e:
                reply = ("error", describe(e))
        try:
            send(fd, reply)
        except OSError:
            return


def describe(e: BaseException) -> str:
    """An exception as one line: its type and its message."""
    message = str(e).strip()
    return f"{type(e).__name__}: {message}" if message else type(e).__name__
