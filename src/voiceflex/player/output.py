"""What the player needs from a sound output: an Output plays an int16 buffer as a Stream it can stop exactly."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Protocol

from voiceflex.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import numpy as np


class Stream(Protocol):
    """One buffer being played, from its first frame towards its last."""

    def played(self) -> int:
        """Frames of the buffer heard so far: an estimate while playing, exact once done."""

    def done(self) -> bool:
        """True once the buffer's last frame has been played (the device has drained)."""

    def halt(self, *, exact: bool) -> int:
        """Stop playing; return F such that frames [0, F) were heard once and none after F.

        With `exact`, F is a promise: resuming from frame F loses and repeats
        nothing (an output may play on for a moment to keep it).  Without it,
        the stream stops as soon as it can and F is only an estimate.  Returns
        only when the device has let go of the buffer.
        """


class Output(Protocol):
    """A sound output: plays int16 mono buffers at voiceflex's one sample rate."""

    name: str

    def play(self, samples: np.ndarray, ready: Callable[[int], None] | None = None) -> Stream:
        """Start playing `samples` (C-contiguous, writable int16); raises DeviceError if it cannot.

        `samples` may still be being rendered into: `ready(n)` returns once
        samples[:n] are final (and raises if they never will be).  The
        device must get no sample before `ready` vouched for it.
        """


OUTPUTS = ("sounddevice", "simpleaudio")
# VOICEFLEX_AUDIO=simpleaudio chooses an output; by default the first that loads.
ENV = "VOICEFLEX_AUDIO"


def default_output(choice: str | None = None) -> Output:
    """The output `voiceflex play` uses: `choice` (else $VOICEFLEX_AUDIO), or sounddevice, else simpleaudio.

    sounddevice comes first because it streams while the track renders
    (sounddevice_output); simpleaudio must wait for the whole rest of the
    track before it starts (simpleaudio_output).  Raises DeviceError when
    none can be loaded, with every reason.
    """
    choice = choice or os.environ.get(ENV) or None
    if choice is not None and choice not in OUTPUTS:
        raise UsageError(f"{ENV}={choice} is not a sound backend", hint=f"use one of: {', '.join(OUTPUTS)}")
    reasons = []
    for name in (choice,) if choice else OUTPUTS:
        try:
            return _load(name)
        except DeviceError as exc:
            reasons.append(str(exc).removeprefix("no sound output: "))
    raise DeviceError("no sound output: " + "; ".join(reasons))


def _load(name: str) -> Output:
    if name == "sounddevice":
        from voiceflex.player.sounddevice_output import SounddeviceOutput

        return SounddeviceOutput()
    from voiceflex.player.simpleaudio_output import SimpleaudioOutput

    return SimpleaudioOutput()
