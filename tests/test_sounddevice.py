"""The sounddevice backend against a fake PortAudio: the device gets only samples the renderer vouched for."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from voiceflex.audio.rate import RATE
from voiceflex.errors import DeviceError, UsageError
from voiceflex.player import output as output_module
from voiceflex.player.sounddevice_output import BLOCK, SounddeviceOutput


class PortAudioError(Exception):
    pass


class FakeSd:
    """A PortAudio device that takes writes at once (an unpaced capture) and records them."""

    PortAudioError = PortAudioError

    def __init__(self, *, vouched=None, fail_open=False, capacity=4096):
        self.vouched = vouched  # a list whose last item is how far the renderer got
        self.fail_open = fail_open
        self.capacity = capacity
        self.streams: list[FakeSd.RawOutputStream] = []

    def RawOutputStream(self, **kwargs):  # noqa: N802 - sounddevice's name
        if self.fail_open:
            raise PortAudioError("Error querying device -1", -9996)
        self.streams.append(_FakeRawStream(self, kwargs))
        return self.streams[-1]


class _FakeRawStream:
    def __init__(self, sd: FakeSd, kwargs):
        self.sd = sd
        self.kwargs = kwargs
        self.data: list[np.ndarray] = []
        self.calls: list[str] = []
        self.written = 0

    @property
    def write_available(self) -> int:
        return self.sd.capacity

    def start(self):
        self.calls.append("start")

    def write(self, block):
        if self.sd.vouched is not None:
            assert self.written + len(block) <= self.sd.vouched[-1], "the device got a sample not yet final"
        self.data.append(np.array(block))
        self.written += len(block)

    def stop(self):
        self.calls.append("stop")

    def abort(self):
        self.calls.append("abort")

    def close(self):
        self.calls.append("close")

    def heard(self) -> np.ndarray:
        return np.concatenate(self.data) if self.data else np.zeros(0, np.int16)


def wait_done(stream, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not stream.done():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_the_device_waits_for_a_slow_renderer_and_gets_every_sample_once():
    samples = (np.arange(10 * BLOCK + 123) % 3000 + 1).astype(np.int16)
    vouched = [0]
    done = threading.Condition()

    def ready(n):  # the renderer finishes one block every millisecond
        with done:
            while vouched[-1] < n:
                done.wait(0.001)
                vouched.append(min(vouched[-1] + BLOCK // 3, len(samples)))

    sd = FakeSd(vouched=vouched)
    stream = SounddeviceOutput(module=sd).play(samples, ready)
    wait_done(stream)
    (raw,) = sd.streams
    assert raw.kwargs["samplerate"] == RATE and raw.kwargs["dtype"] == "int16"
    assert np.array_equal(raw.heard(), samples)
    assert raw.calls == ["start", "stop", "close"]  # stopped after the last write: drained
    assert stream.played() == len(samples)


def release_once_halting(stream, gate: threading.Event) -> None:
    """Let the stalled renderer go on only once the halt has begun (the order the tests are about)."""
    def wait():
        while not stream._stopping.is_set():
            time.sleep(0.001)
        gate.set()

    threading.Thread(target=wait, daemon=True).start()


def test_an_exact_halt_stops_writing_and_reports_what_was_written():
    samples = np.ones(100 * BLOCK, np.int16)
    gate = threading.Event()
    asked = []

    def ready(n):
        asked.append(n)
        if n > 3 * BLOCK:
            gate.wait()  # the renderer stalls after three blocks

    sd = FakeSd()
    stream = SounddeviceOutput(module=sd).play(samples, ready)
    while len(asked) < 4:
        time.sleep(0.001)
    release_once_halting(stream, gate)
    result = stream.halt(exact=True)
    (raw,) = sd.streams
    assert result == raw.written == 3 * BLOCK  # nothing after the stop, all of it played out
    assert raw.calls[-2:] == ["stop", "close"]


def test_a_quick_halt_aborts_and_estimates_without_what_is_buffered():
    sd = FakeSd(capacity=BLOCK)
    gate = threading.Event()
    stream = SounddeviceOutput(module=sd).play(np.ones(10 * BLOCK, np.int16),
                                               lambda n: n > 2 * BLOCK and gate.wait())
    while not sd.streams or sd.streams[0].written < 2 * BLOCK:
        time.sleep(0.001)
    sd.capacity = BLOCK // 2  # half a block still in the device
    release_once_halting(stream, gate)
    at = stream.halt(exact=False)
    assert "abort" in sd.streams[0].calls
    assert at <= sd.streams[0].written - BLOCK // 2


def test_an_unopenable_device_is_a_device_error():
    with pytest.raises(DeviceError, match="cannot be opened.*no default output device"):
        SounddeviceOutput(module=FakeSd(fail_open=True)).play(np.ones(10, np.int16))


def test_missing_portaudio_names_the_package(monkeypatch):
    class NoPortAudio:
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(DeviceError, match="libportaudio2"):
        SounddeviceOutput()


def test_the_default_falls_back_to_simpleaudio_and_reports_every_reason(monkeypatch):
    monkeypatch.delenv(output_module.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    assert output_module.default_output().name == "simpleaudio"
    monkeypatch.setitem(sys.modules, "simpleaudio", None)
    with pytest.raises(DeviceError) as info:
        output_module.default_output()
    message = str(info.value)
    assert "sounddevice" in message and "simpleaudio" in message and "\n" not in message


def test_the_backend_can_be_chosen_and_a_wrong_name_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(output_module.ENV, "simpleaudio")
    assert output_module.default_output().name == "simpleaudio"
    monkeypatch.setenv(output_module.ENV, "pulse")
    with pytest.raises(UsageError) as info:
        output_module.default_output()
    assert "pulse" in str(info.value) and "sounddevice, simpleaudio" in info.value.hint


def test_a_device_that_never_takes_a_write_is_a_device_error(monkeypatch):
    from voiceflex.player import sounddevice_output

    monkeypatch.setattr(sounddevice_output, "STOP_TIMEOUT_S", 0.05)
    stuck, patched, entered = threading.Event(), threading.Event(), threading.Event()
    sd = FakeSd()
    stream = SounddeviceOutput(module=sd).play(np.ones(4 * BLOCK, np.int16), lambda n: patched.wait())
    sd.streams[0].write = lambda block: (entered.set(), stuck.wait())  # a write that never returns
    patched.set()
    assert entered.wait(5)
    try:
        with pytest.raises(DeviceError, match="stopped responding"):
            stream.halt(exact=True)
    finally:
        stuck.set()
