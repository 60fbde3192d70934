"""A play session set up and torn down: the track rendering, the device open, keys from the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from voiceflex.errors import DeviceError
from voiceflex.player.keys import Keys, terminal_keys
from voiceflex.player.output import Output, default_output
from voiceflex.player.render_thread import TrackRender
from voiceflex.player.session import Player

if TYPE_CHECKING:
    from voiceflex.planned import Plan


@contextmanager
def play(plan: Plan, *, chapter: int = 0, keys_fd: int | None = None, output: Output | None = None,
         device_hint: str | None = None) -> Iterator[tuple[Player, Keys | None]]:
    """The session playing `plan` from `chapter`, and the keys of terminal `keys_fd` (None: no keys).

    The track is rendered while it plays: the device starts on the first
    seconds.  A DeviceError on opening the device gets `device_hint`
    added.  On leaving, the terminal is restored, playback stops and the
    render ends, also when what ran inside failed.
    """
    track = TrackRender(plan)
    try:
        try:
            session = Player(track.samples, plan.timeline, output or default_output(), ready=track.ready)
            session.start(session.starts[chapter])  # opens the device
        except DeviceError as exc:
            if device_hint is None:
                raise
            raise DeviceError(f"{exc}; {device_hint}") from None
        try:
            with terminal_keys(keys_fd) if keys_fd is not None else nullcontext() as keys:
                yield session, keys
        finally:
            session.stop()
    finally:
        track.close()
