"""What the player needs from a sound output: a Backend plays an int16 buffer as a Stream it can stop exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

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
        nothing (a backend may play on for a moment to keep it).  Without it,
        the stream stops as soon as it can and F is only an estimate.  Returns
        only when the device has let go of the buffer.
        """


class Backend(Protocol):
    """A sound output: plays int16 mono buffers at voiceflex's one sample rate."""

    name: str

    def play(self, samples: np.ndarray) -> Stream:
        """Start playing `samples` (C-contiguous, writable int16); raises DeviceError if it cannot."""


def default_backend() -> Backend:
    """The backend `voiceflex play` uses; raises DeviceError when it cannot be loaded."""
    from voiceflex.player.simpleaudio_backend import SimpleaudioBackend

    return SimpleaudioBackend()
