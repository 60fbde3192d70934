"""Runs inside a worker process: libespeak-ng, through pyttsx3, speaking each cue from a fresh state.

Imports only small parts of the standard library and pyttsx3's bindings: every
cue is spoken by a child forked from this process, and a fork costs about in
proportion to the memory the process has written.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CHILD_LIMIT_S = 60
# A view of up to 16 MiB of libespeak-ng's output buffer (it hands over at most a second).
_WINDOW = ctypes.c_char * (1 << 24)


class Pyttsx3Worker:
    """libespeak-ng started and given its voice here, and each cue spoken by a child forked from that.

    libespeak-ng carries synthesis state from one utterance to the next (the
    same text came out some ms longer or shorter, with another waveform, after
    other texts), and neither setting the voice again nor espeak_ng_Initialize
    resets it.  This worker never speaks itself: each cue is spoken by a child
    forked from it, so from the state of a process that has spoken nothing,
    whatever the order in which the cues were handed out (docs/voices.md).

    The child asks libespeak-ng, through pyttsx3's bindings and with the flags
    pyttsx3 uses, to speak synchronously: that mode starts no thread (so the
    fork is safe) and the cue is complete when Synth returns.  pyttsx3's own
    threaded driver cut about 1 cue in 20 short when each ran in a fresh process.
    """

    def __init__(self) -> None:
        from pyttsx3.drivers import _espeak

        self._espeak = _espeak
        # Started here, while the pool waits for its other workers or the
        # engine's info, not on the first cue.
        self._sample_rate = _espeak.Initialize(_espeak.AUDIO_OUTPUT_SYNCHRONOUS, 1000)
        if self._sample_rate <= 0:
            raise RuntimeError("libespeak-ng could not start")
        _espeak.SetSynthCallback(self._on_synth)
        self._voice: str | None = None
        # The child writes the samples straight from libespeak-ng's buffer
        # into this file in memory, and this process reads them once it ended.
        self._pcm = _memory_file("voiceflex-pcm")
        self._written = 0

    def info(self) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
        return _in_child(_info)

    def render(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        if not text.strip():
            raise ValueError("there is no text to speak")
        espeak = self._espeak
        if voice != self._voice:
            # A pool serves one routine, so a worker sets its voice once.
            if espeak.SetVoiceByName(voice.encode("utf-8")) != espeak.EE_OK:
                raise RuntimeError(f"libespeak-ng has no voice {voice!r}")
            self._voice = voice
        # Not emptied between cues: its pages stay, and the child's answer says how much is this cue's.
        size = _in_child(self._speak, text, rate)
        frames = os.pread(self._pcm, size, 0)
        if len(frames) != size or frames.count(0) == size:  # (counted: strip would copy them)
            raise RuntimeError("libespeak-ng produced no sound")
        return frames, self._sample_rate

    def _on_synth(self, wav, count, events) -> int:  # noqa: ANN001 - a ctypes callback
        if count > 0:
            # The samples where libespeak-ng left them: no bytes object, and
            # no ctypes type made for this length (in a child, which would
            # make it anew for every cue).
            samples = memoryview(_WINDOW.from_address(ctypes.addressof(wav.contents)))[:count * 2]
            self._written += _write_at(self._pcm, samples, self._written)
        return 0

    def _speak(self, text: str, rate: int) -> int:
        """Runs in the child: the cue's samples written into the PCM file; how many bytes."""
        espeak = self._espeak
        self._written = 0
        espeak.SetParameter(espeak.RATE, rate, 0)
        espeak.Synth(text.encode("utf-8"), flags=espeak.ENDPAUSE | espeak.CHARS_UTF8)
        return self._written


def _info() -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
    """libespeak-ng's version, and the voices as pyttsx3 lists them."""
    import pyttsx3  # here, in the child: the worker itself stays small
    from pyttsx3.drivers import _espeak

    tts = pyttsx3.init("espeak")
    library = (_espeak.Info() or b"?").decode("utf-8", "replace")
    voices = [(v.id, v.name, tuple(v.languages or ())) for v in tts.getProperty("voices")]
    return library, voices


def _in_child(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` run in a forked child; its exception, or its crash, raised here.

    The child writes its pickled answer into a file in memory, which this
    process reads once the child has ended: it sleeps meanwhile.  (Reading a
    pipe, it woke for every 64 KiB of a cue, and each wake-up copied pages
    it still shared with the child.)
    """
    reply = _reply_file()
    os.ftruncate(reply, 0)
    pid = os.fork()
    if pid == 0:  # the child: answer through the file and leave without clean-up
        status = 0
        try:
            # A collection would write to every object's header, so copy
            # every page of this process; the child lives a few ms.
            gc.disable()
            # The pool kills a worker that hangs; a child hung in libespeak-ng
            # would outlive it.  No cue takes a minute.
            signal.alarm(CHILD_LIMIT_S)
            try:
                answer = ("ok", function(*args))
            except Exception as e:
                answer = ("error", f"{type(e).__name__}: {e}".rstrip(": "))
            _write_at(reply, memoryview(pickle.dumps(answer)), 0)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        raise RuntimeError(f"the speech process {how}")
    size = os.fstat(reply).st_size
    if size == 0:
        raise RuntimeError("the speech process ended without answering")
    status, value = pickle.loads(os.pread(reply, size, 0))
    if status != "ok":
        raise RuntimeError(value)
    return value


def _write_at(fd: int, data: memoryview, offset: int) -> int:
    """All of `data` written into the file `fd` at `offset`; its length."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
    return done


_reply: list[int] = []  # this process's reply file, made on first use


def _reply_file() -> int:
    if not _reply:
        _reply.append(_memory_file("voiceflex-reply"))
    return _reply[0]


def _memory_file(name: str) -> int:
    """An unnamed file in memory, open for reading and writing, that children inherit."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        return memfd_create(name, os.MFD_CLOEXEC)
    import tempfile  # no memfd_create (not Linux): an unnamed temporary file

    with tempfile.TemporaryFile() as file:
        return os.dup(file.fileno())
