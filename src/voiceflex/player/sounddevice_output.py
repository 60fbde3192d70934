"""Playback through sounddevice (PortAudio): a blocking write stream fed only with final samples.

The default: one writer thread hands the device only final samples, so it can never pass the
renderer (docs/internals.md, "sounddevice").
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.errors import DeviceError

# Frames per write: small enough that a halt is heard soon, large enough that
# the writer thread costs nothing.
BLOCK = 2048
# PortAudio's suggested latency: "high" is its safe default for blocking
# streams (~0.1-0.2 s on ALSA); the exact halt waits for this much.
LATENCY = "high"
# A writer that has not let go after this long means the device is stuck.
STOP_TIMEOUT_S = 5.0

Ready = Callable[[int], None]


class SounddeviceStream:
    """A buffer written to a PortAudio stream block by block, each block only once it is final."""

    def __init__(self, sd: Any, samples: np.ndarray, ready: Ready | None):
        self._samples = samples
        self._ready = ready
        self._written = 0
        self._final: int | None = None
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        try:
            self._stream = sd.RawOutputStream(samplerate=RATE, channels=1, dtype="int16",
                                              latency=LATENCY)
            self._stream.start()
            # Before any write the whole buffer is free: what is not free later is not heard yet.
            self._capacity = max(self._stream.write_available, 0)
        except sd.PortAudioError as exc:
            reason = _reason(exc)
            if "device -1" in reason:  # PortAudio's way of saying there is no default output
                reason = "PortAudio finds no default output device"
            raise DeviceError(f"no sound output: the default device cannot be opened ({reason})") from None
        self._thread = threading.Thread(target=self._write_all, daemon=True, name="voiceflex-device")
        self._thread.start()

    def _write_all(self) -> None:
        n = len(self._samples)
        try:
            while self._written < n and not self._stopping.is_set():
                upto = min(self._written + BLOCK, n)
                if self._ready is not None:
                    self._ready(upto)  # the device waits for the renderer, never the other way round
                if self._stopping.is_set():
                    break
                self._stream.write(self._samples[self._written:upto])
                self._written = upto
            if not self._stopping.is_set():
                self._stream.stop()  # returns once the device has played every written frame
        except BaseException as exc:  # noqa: BLE001 - reported by halt/done to the player's thread
            self._error = exc
        finally:
            self._finished.set()

    def played(self) -> int:
        if self._final is not None:
            return self._final
        if self._finished.is_set() and not self._stopping.is_set():
            return self._written
        try:
            queued = max(0, self._capacity - self._stream.write_available)
        except Exception:  # noqa: BLE001 - a closed stream: the estimate is what was written
            queued = 0
        return max(0, self._written - queued)

    def done(self) -> bool:
        if self._final is not None:
            return True
        if not self._finished.is_set():
            return False
        self._raise_error()
        self._final = self._written
        self._stream.close()
        return True

    def halt(self, *, exact: bool) -> int:
        if self._final is not None or (self._finished.is_set() and not self._stopping.is_set()):
            self.done()
            return self._final  # type: ignore[return-value]
        self._stopping.set()
        # The writer finishes its block (one block of device time, or the
        # renderer's next chunk) and stops.
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise DeviceError("the sound device stopped responding (a write did not return)")
        estimate = self.played()
        try:
            if exact:
                self._stream.stop()  # plays out what was written: all of it was heard once
            else:
                self._stream.abort()
        finally:
            self._stream.close()
        self._final = self._written if exact else min(estimate, self._written)
        self._raise_error()
        return self._final

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is None:
            return
        if isinstance(error, DeviceError) or not _is_portaudio_error(error):
            raise error
        raise DeviceError(f"the sound device failed while playing ({_reason(error)})")


class SounddeviceOutput:
    """Sound output through PortAudio's default device; raises DeviceError when PortAudio is missing."""

    name = "sounddevice"

    def __init__(self, *, module: Any = None):
        self._sd = module if module is not None else _load()

    def play(self, samples: np.ndarray, ready: Ready | None = None) -> SounddeviceStream:
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("sounddevice plays int16 mono buffers")
        return SounddeviceStream(self._sd, samples, ready)


def _load() -> Any:
    from voiceflex.player.simpleaudio_output import quiet_alsa

    quiet_alsa()  # PortAudio probes every ALSA device as it loads, and libasound complains on stderr
    try:
        import sounddevice
    except ImportError:
        raise DeviceError("no sound output: the sounddevice module is not installed "
                          "(pip install sounddevice)") from None
    except OSError:
        # sounddevice raises OSError("PortAudio library not found") at import.
        raise DeviceError("no sound output: the PortAudio library is missing "
                          "(Debian/Ubuntu: apt install libportaudio2)") from None
    return sounddevice


def _is_portaudio_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "PortAudioError"


def _reason(exc: BaseException) -> str:
    """PortAudio's ('Error opening OutputStream: Invalid device', -9996) as its words."""
    args = getattr(exc, "args", ())
    return str(args[0]) if args else str(exc)
