"""Runs inside a worker process: libespeak-ng, through pyttsx3, speaking each cue from a fresh state.

Imports only the standard library and pyttsx3, so a worker starts quickly.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
from collections.abc import Callable
from importlib import metadata
from typing import TypeVar

T = TypeVar("T")
CHILD_LIMIT_S = 60


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
        import pyttsx3
        from pyttsx3.drivers import _espeak

        self._pyttsx3 = pyttsx3
        self._espeak = _espeak
        self._sample_rate = 0  # libespeak-ng is started on the first cue
        self._voice: str | None = None
        self._chunks: list[bytes] = []

    def info(self) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
        return _in_child(self._info)

    def render(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        if not text.strip():
            raise ValueError("there is no text to speak")
        espeak = self._espeak
        if not self._sample_rate:
            self._sample_rate = espeak.Initialize(espeak.AUDIO_OUTPUT_SYNCHRONOUS, 1000)
            if self._sample_rate <= 0:
                raise RuntimeError("libespeak-ng could not start")
            espeak.SetSynthCallback(self._on_synth)
        if voice != self._voice:
            # A pool serves one routine, so a worker sets its voice once.
            if espeak.SetVoiceByName(voice.encode("utf-8")) != espeak.EE_OK:
                raise RuntimeError(f"libespeak-ng has no voice {voice!r}")
            self._voice = voice
        return _in_child(self._speak, text, rate)

    def _on_synth(self, wav, count, events) -> int:  # noqa: ANN001 - a ctypes callback
        if count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def _info(self) -> tuple[str, list[tuple[str, str, tuple[str, ...]]]]:
        tts = self._pyttsx3.init("espeak")
        library = (self._espeak.Info() or b"?").decode("utf-8", "replace")
        version = f"pyttsx3 {metadata.version('pyttsx3')}, libespeak-ng {library}, fresh state per cue"
        voices = [(v.id, v.name, tuple(v.languages or ())) for v in tts.getProperty("voices")]
        return version, voices

    def _speak(self, text: str, rate: int) -> tuple[bytes, int]:
        espeak = self._espeak
        espeak.SetParameter(espeak.RATE, rate, 0)
        espeak.Synth(text.encode("utf-8"), flags=espeak.ENDPAUSE | espeak.CHARS_UTF8)
        frames = b"".join(self._chunks)
        if not frames.strip(b"\0"):
            raise RuntimeError("libespeak-ng produced no sound")
        return frames, self._sample_rate


def _in_child(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` run in a forked child; its exception, or its crash, raised here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe and leave without clean-up
        status = 0
        try:
            # The pool kills a worker that hangs; a child hung in libespeak-ng
            # would outlive it.  No cue takes a minute.
            signal.alarm(CHILD_LIMIT_S)
            os.close(read_end)
            try:
                reply = ("ok", function(*args))
            except Exception as e:
                reply = ("error", f"{type(e).__name__}: {e}".rstrip(": "))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(reply))
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    if not data:
        code = os.waitstatus_to_exitcode(wait_status)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        raise RuntimeError(f"the speech process {how}")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(value)
    return value
