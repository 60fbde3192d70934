"""Playback through simpleaudio: one buffer per stream, stopped at an exact frame by silencing ahead of the device.

simpleaudio has no pause or position: one buffer per stream, started once final, and an exact
stop by writing silence ahead of the device (docs/internals.md, "simpleaudio").
"""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Any, Callable

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.errors import DeviceError

# How far ahead of the play position the device may already have read.
# simpleaudio asks ALSA for a 100 ms buffer; dmix, PulseAudio and PipeWire
# round that up; the "device" capture of tests/alsa.py reads up to 0.3 s ahead.
LEAD_S = 0.4
# How far past the cut the estimate must be before the stream is stopped, so
# the device is reading silence when the stop comes even if it started late
# (the estimate counts from `play_buffer`, the device from its first period).
MARGIN_S = 0.1
# Sound cards run off their own crystal, within ~100 ppm of the system clock:
# the estimate of a long stream can be off by that much in either direction.
DRIFT = 1e-4
# Silence written from the cut: covers the margin, the drift and the one
# write simpleaudio finishes after a stop, with room to spare.
SILENCE_S = 2.0
# A drain longer than this means the device is stuck.
STOP_TIMEOUT_S = 5.0
POLL_S = 0.002

Clock = Callable[[], float]


class SimpleaudioStream:
    """A buffer playing through simpleaudio (see the module docstring for how it halts exactly)."""

    def __init__(self, play_object: Any, samples: np.ndarray, *, clock: Clock, sleep: Callable[[float], None]):
        self._obj = play_object
        self._samples = samples
        self._clock = clock
        self._sleep = sleep
        self._t0 = clock()
        self._final: int | None = None

    def _estimate(self) -> int:
        return int((self._clock() - self._t0) * RATE)

    def played(self) -> int:
        if self._final is not None:
            return self._final
        if self.done():
            return len(self._samples)
        return max(0, min(self._estimate(), len(self._samples)))

    def done(self) -> bool:
        if self._final is not None:
            return True
        if self._obj.is_playing():
            return False
        self._final = len(self._samples)
        return True

    def halt(self, *, exact: bool) -> int:
        if self.done():
            return self._final  # type: ignore[return-value]
        n = len(self._samples)
        now = max(0, self._estimate())
        slack = int(now * DRIFT)
        cut = min(now + (int(LEAD_S * RATE) + slack if exact else 0), n)
        end = min(cut + int(SILENCE_S * RATE) + 2 * slack, n)
        saved = self._samples[cut:end].copy()
        self._samples[cut:end] = 0
        try:
            if exact:
                target = cut + int(MARGIN_S * RATE) + slack
                while self._obj.is_playing() and self._estimate() < target:
                    self._sleep(POLL_S)
        finally:
            # Also on Ctrl-C: the stream must not play on after we return.
            self._obj.stop()
            self._wait_released()
            self._samples[cut:end] = saved
        self._final = cut
        return cut

    def _wait_released(self) -> None:
        deadline = self._clock() + STOP_TIMEOUT_S
        while self._obj.is_playing():
            if self._clock() > deadline:
                raise DeviceError("the sound device stopped responding (a stopped stream did not drain)")
            self._sleep(POLL_S)


class SimpleaudioOutput:
    """The default sound output through simpleaudio (ALSA on Linux)."""

    name = "simpleaudio"

    def __init__(self, *, module: Any = None, clock: Clock = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._sa = module if module is not None else _load()
        self._clock = clock
        self._sleep = sleep
        quiet_alsa()

    def play(self, samples: np.ndarray, ready: Callable[[int], None] | None = None) -> SimpleaudioStream:
        if samples.dtype != np.int16 or samples.ndim != 1 or not samples.flags.c_contiguous:
            raise ValueError("simpleaudio plays C-contiguous int16 mono buffers")
        if ready is not None:
            # simpleaudio reads the buffer at the device's pace, which may be
            # any pace: only a finished buffer is safe to hand it.
            ready(len(samples))
        try:
            obj = self._sa.play_buffer(samples, 1, 2, RATE)
        except Exception as exc:  # SimpleaudioError is not importable by a stable name
            if type(exc).__name__ != "SimpleaudioError":
                raise
            raise DeviceError(f"no sound output: {_describe(exc)}") from None
        return SimpleaudioStream(obj, samples, clock=self._clock, sleep=self._sleep)


def _load() -> Any:
    try:
        import simpleaudio
    except (ImportError, OSError) as exc:
        raise DeviceError(f"no sound output: the simpleaudio module cannot be loaded ({exc})") from None
    return simpleaudio


def _describe(exc: Exception) -> str:
    """simpleaudio's "Error opening PCM device. -- CODE: -2 -- MSG: No such file..." in words."""
    text = str(exc)
    what, _, rest = text.partition(" -- ")
    reason = rest.rpartition("MSG: ")[2].strip() or what
    if "opening" in what.lower():
        return f"the default ALSA device cannot be opened ({reason})"
    if "parameters" in what.lower():
        return f"the default ALSA device does not take 22050 Hz mono 16-bit audio ({reason})"
    return text


_alsa_handler: Any = None


def quiet_alsa() -> None:
    """Keep libasound's own error messages ("ALSA lib pcm.c:...") off the terminal.

    ALSA prints them from C straight to stderr, before simpleaudio raises;
    voiceflex reports the problem in one line instead.  Linux only; elsewhere
    simpleaudio does not use ALSA.
    """
    global _alsa_handler
    if _alsa_handler is not None or not sys.platform.startswith("linux"):
        return
    try:
        lib = ctypes.CDLL("libasound.so.2")
    except OSError:
        return
    # The real handler type is variadic; the extra arguments are ignored.
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                    ctypes.c_int, ctypes.c_char_p)
    _alsa_handler = handler_type(lambda *args: None)  # kept referenced: ALSA holds the pointer
    lib.snd_lib_error_set_handler(_alsa_handler)
