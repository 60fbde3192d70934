"""The play session: a rendered track played from any sample, with exact pause and resume, and chapter skips."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.errors import UsageError
from voiceflex.player.keys import Command, Keys, NoKeys
from voiceflex.routine.values import short

if TYPE_CHECKING:
    import numpy as np

    from voiceflex.player.output import Output, Stream
    from voiceflex.timeline import Timeline

# `p` within this long of a chapter's start goes to the chapter before, as
# music players do: a first press restarts the chapter, a quick second one
# goes back further.
BACK_AGAIN_S = 2.0
# How often the engine looks at keys, the stream and the display.
TICK_S = 0.1


def find_chapter(timeline: Timeline, wanted: str) -> int:
    """The 0-based index of the chapter `wanted` names: a 1-based number, or a title or its start (any case).

    A title matches before a prefix; among prefixes the first chapter wins,
    so `--from stretch` starts at "Stretch: left".
    """
    chapters = timeline.chapters
    text = wanted.strip()
    # ASCII digits only, and few: str.isdigit() also takes "²" and "①", which int() refuses.
    if re.fullmatch(r"[0-9]{1,9}", text):
        number = int(text)
        if 1 <= number <= len(chapters):
            return number - 1
    else:
        folded = text.casefold()
        titles = [c.title.casefold() for c in chapters]
        if folded in titles:
            return titles.index(folded)
        for i, title in enumerate(titles):
            if folded and title.startswith(folded):
                return i
    listing = ", ".join(f"{i} {c.title}" for i, c in enumerate(chapters, 1))
    raise UsageError(f'--from "{short(wanted, 40)}" is not a chapter of this routine',
                     hint=f"give a number from 1 to {len(chapters)} or a title: {listing}")


@dataclass(frozen=True)
class Outcome:
    """How a play ended: "finished" (the last sample was played) or "quit", and where."""

    how: str
    position: int


class Player:
    """Plays `track` through `output` and keeps the exact position.

    The position is a sample index into the track.  While a stream plays it
    is the stream's origin plus what the stream reports played; when paused
    it is the exact frame the stream stopped at, so a resume continues with
    the very next sample.

    `ready(n)`, if given, waits until samples [0, n) of `track` are final
    (TrackRender.ready: the track is still being rendered into) and raises
    if they never will be.
    """

    def __init__(self, track: np.ndarray, timeline: Timeline, output: Output,
                 ready: Callable[[int], None] | None = None):
        self.track = track
        self.timeline = timeline
        self.output = output
        self._ready = ready
        self.total = len(track)
        self.starts = [min(ms_to_samples(c.start_ms), self.total) for c in timeline.chapters]
        self._stream: Stream | None = None
        self._origin = 0
        self._position = 0
        self.paused = False
        self.finished = False

    # ---- state -------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._stream is not None

    def position(self) -> int:
        if self._stream is None:
            return self._position
        return min(self._origin + self._stream.played(), self.total)

    def chapter_at(self, position: int) -> int:
        return max(0, bisect.bisect_right(self.starts, position) - 1)

    def poll(self) -> None:
        """Notice a stream that played to its end (every stream runs to the track's end)."""
        if self._stream is not None and self._stream.done():
            self._stream = None
            self._position = self.total
            self.finished = True

    # ---- commands ----------------------------------------------------------

    def start(self, at: int = 0) -> None:
        self._play_from(at)

    def toggle(self) -> None:
        if self._stream is not None:
            self._halt(exact=True)
            self.paused = not self.finished
        elif self.paused:
            self._play_from(self._position)

    def seek(self, at: int) -> None:
        """Go to sample `at`: playing on from there, or staying paused there."""
        if self._stream is not None:
            self._halt(exact=False)
            self._play_from(at)
        elif not self.finished:
            self._position = min(at, self.total)

    def next_chapter(self) -> None:
        """The next chapter's first sample; past the last chapter, the end of the routine."""
        index = self.chapter_at(self.position())
        if index + 1 < len(self.starts):
            self.seek(self.starts[index + 1])
        else:
            self.stop()
            self._position = self.total
            self.finished = True

    def back(self) -> None:
        position = self.position()
        index = self.chapter_at(position)
        if position - self.starts[index] < BACK_AGAIN_S * RATE and index > 0:
            index -= 1
        self.seek(self.starts[index])

    def stop(self) -> None:
        """Silence now (quit, Ctrl-C); the position is kept as an estimate."""
        if self._stream is not None:
            self._halt(exact=False)

    def apply(self, command: Command) -> bool:
        """Carry out a command; False when it was the last (quit)."""
        if command is Command.QUIT:
            self.stop()
            return False
        if command is Command.TOGGLE:
            self.toggle()
        elif command is Command.NEXT:
            self.next_chapter()
        elif command is Command.BACK:
            self.back()
        return True

    # ---- the loop ----------------------------------------------------------

    def run(self, *, start_at: int | None = 0, keys: Keys | None = None,
            on_update: Callable[[Player], None] | None = None) -> Outcome:
        """Play from `start_at` (None: go on from `start`) until the last sample was played, or a quit.

        Calls `on_update(self)` about ten times a second and after every
        command (the display).  Whatever ends the loop (Ctrl-C too) leaves
        the device silent.
        """
        keys = keys if keys is not None else NoKeys()
        try:
            if start_at is not None:
                self.start(start_at)
            while True:
                self._wait(0)  # a renderer that failed stops the player here
                self.poll()
                if on_update is not None:
                    on_update(self)
                if self.finished:
                    return Outcome("finished", self.total)
                for command in keys.read(self._tick()):
                    if command is Command.TOGGLE and self.playing and on_update is not None:
                        # Show "paused" now: an exact halt lets the device
                        # play on for about half a second (simpleaudio_output).
                        self.paused = True
                        on_update(self)
                    if not self.apply(command):
                        return Outcome("quit", self.position())
                    self.poll()
                    if on_update is not None:
                        on_update(self)
        finally:
            self.stop()

    def _tick(self) -> float:
        # Near the end, look more often: `play` returns as soon as the last
        # sample was played, not up to a tick later.
        if self._stream is None:
            return TICK_S
        left = (self.total - self.position()) / RATE
        return min(TICK_S, max(0.005, left))

    # ---- streams -----------------------------------------------------------

    def _wait(self, upto: int) -> None:
        if self._ready is not None:
            self._ready(upto)

    def _play_from(self, at: int) -> None:
        at = max(0, min(at, self.total))
        self.paused = False
        if at >= self.total:
            self._position = self.total
            self.finished = True
            return
        self._origin = at
        self._position = at
        self.finished = False
        # The output asks for each sample through `ready` before the device
        # may read it: the device can never pass the renderer.
        ready = None if self._ready is None else (lambda n, at=at: self._wait(at + n))
        self._stream = self.output.play(self.track[at:], ready)

    def _halt(self, *, exact: bool) -> None:
        stream, self._stream = self._stream, None
        assert stream is not None
        self._position = min(self._origin + stream.halt(exact=exact), self.total)
        if self._position >= self.total:
            self.finished = True
