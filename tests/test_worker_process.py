"""The worker process's own side, without espeak: message framing, and the pyttsx3 worker's child per cue (fake libespeak-ng)."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
import types

import pytest

from voiceflex.voice import pyttsx3_worker, worker_main
from voiceflex.voice.pyttsx3_worker import Pyttsx3Worker, _in_child

# ---- framing ---------------------------------------------------------------------------------


def test_messages_arrive_whole_both_ways_whatever_their_size():
    here, there = socket.socketpair()
    big = bytes(range(256)) * 20_000  # 5 MB: far more than a socket holds, so sent while read
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.extend(worker_main.recv(there.fileno()) for _ in range(3)))
    reader.start()
    for message in (("render", "Hold it.", "gmw/en-us", 160), ("ok", (big, 22050)), ()):
        worker_main.send(here.fileno(), message)
    reader.join(30)
    assert got == [("render", "Hold it.", "gmw/en-us", 160), ("ok", (big, 22050)), ()]
    here.close()
    there.close()


def test_a_closed_or_cut_connection_is_the_end_of_it():
    here, there = socket.socketpair()
    here.close()
    with pytest.raises(EOFError):
        worker_main.recv(there.fileno())
    here, there = socket.socketpair()
    here.sendall((100).to_bytes(8, "big") + b"only ten b")  # a sender that died mid-message
    here.close()
    with pytest.raises(EOFError):
        worker_main.recv(there.fileno())


# ---- the pyttsx3 worker, with a fake libespeak-ng ------------------------------------------------


class FakeEspeak(types.ModuleType):
    """pyttsx3's bindings to libespeak-ng as the worker uses them.

    Like libespeak-ng, it keeps state from one utterance to the next: each
    Synth's samples depend on how many it ran before in this process.  It
    hands the samples over in parts of at most CHUNK, as libespeak-ng does
    with its buffer, and ends with a call without samples.
    """

    AUDIO_OUTPUT_SYNCHRONOUS, EE_OK, RATE, ENDPAUSE, CHARS_UTF8 = 2, 0, 1, 0x1000, 1
    CHUNK = 1000

    def __init__(self):
        super().__init__("pyttsx3.drivers._espeak")
        self.callback = None
        self.spoken = 0
        self.rate = 0

    def Initialize(self, output: int, buffer_ms: int) -> int:  # noqa: N802 - pyttsx3's names
        return 22050

    def SetSynthCallback(self, callback) -> None:  # noqa: N802, ANN001
        self.callback = callback

    def SetVoiceByName(self, name: bytes) -> int:  # noqa: N802
        return self.EE_OK if name == b"gmw/en-us" else 1

    def SetParameter(self, parameter: int, value: int, relative: int) -> None:  # noqa: N802
        self.rate = value

    def Synth(self, text: bytes, flags: int) -> None:  # noqa: N802
        self.spoken += 1
        if text == b"quiet":
            values = [0] * 3000
        else:
            values = [(i * len(text) + self.rate + 1000 * self.spoken) % 30000 for i in range(100 * len(text))]
        samples = (ctypes.c_short * len(values))(*values)
        for start in range(0, len(values), self.CHUNK):
            part = ctypes.cast(ctypes.byref(samples, start * 2), ctypes.POINTER(ctypes.c_short))
            self.callback(part, min(self.CHUNK, len(values) - start), None)
        self.callback(None, 0, None)


def expected(text: str, rate: int, spoken_before: int = 0) -> bytes:
    """The fake's samples for `text` after `spoken_before` other utterances in the same process."""
    values = [(i * len(text) + rate + 1000 * (spoken_before + 1)) % 30000 for i in range(100 * len(text))]
    return bytes((ctypes.c_short * len(values))(*values))


@pytest.fixture
def espeak(monkeypatch):
    fake = FakeEspeak()
    drivers = types.ModuleType("pyttsx3.drivers")
    drivers._espeak = fake
    package = types.ModuleType("pyttsx3")
    package.drivers = drivers
    for name, module in (("pyttsx3", package), ("pyttsx3.drivers", drivers), ("pyttsx3.drivers._espeak", fake)):
        monkeypatch.setitem(sys.modules, name, module)
    return fake


def test_a_cue_comes_back_whole_from_its_child(espeak):
    worker = Pyttsx3Worker()
    long = "Kneel on your left knee, the other foot forward."  # several parts of CHUNK samples
    assert worker.render(long, "gmw/en-us", 160) == (expected(long, 160), 22050)
    # After a longer cue: this one's samples, none of the longer one's after them.
    assert worker.render("Hold it.", "gmw/en-us", 160) == (expected("Hold it.", 160), 22050)
    assert espeak.spoken == 0, "the worker itself never speaks"


def test_every_cue_starts_from_the_workers_unspoken_state(espeak):
    worker = Pyttsx3Worker()
    first = worker.render("Three.", "gmw/en-us", 160)[0]
    for text in ("Breathe in", "Switch sides.", "Kneel on your left knee."):
        worker.render(text, "gmw/en-us", 160)
    assert worker.render("Three.", "gmw/en-us", 160)[0] == first == expected("Three.", 160)
    # The test can tell: had the worker itself spoken, every child would carry that on.
    espeak.Synth(b"Breathe in", 0)
    assert worker.render("Three.", "gmw/en-us", 160)[0] == expected("Three.", 160, spoken_before=1)


def test_silence_an_unknown_voice_and_empty_text_are_errors(espeak):
    worker = Pyttsx3Worker()
    worker.render("Kneel on your left knee, the other foot forward.", "gmw/en-us", 160)  # sound past where the silence ends
    with pytest.raises(RuntimeError, match="produced no sound"):
        worker.render("quiet", "gmw/en-us", 160)
    with pytest.raises(RuntimeError, match="no voice 'xx/none'"):
        worker.render("Hold.", "xx/none", 160)
    with pytest.raises(ValueError, match="no text"):
        worker.render("  ", "gmw/en-us", 160)


def test_a_child_that_ends_without_answering_says_so():
    with pytest.raises(RuntimeError, match="ended without answering"):
        _in_child(os._exit, 0)
    with pytest.raises(RuntimeError, match="exited with status 4"):
        _in_child(os._exit, 4)


def _big() -> bytes:
    return os.urandom(3 << 20)


def test_without_memfd_an_unnamed_temporary_file_carries_the_answers(monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(pyttsx3_worker, "_reply", [])
    assert len(_in_child(_big)) == 3 << 20
    assert _in_child(str.upper, "hold") == "HOLD"  # a short answer after a long one: nothing of it left
