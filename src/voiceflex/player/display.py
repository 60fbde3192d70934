"""What the player shows: the state at a position (chapter, time left, last and next cue), as rich text or plain lines."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceflex.audio.rate import RATE

if TYPE_CHECKING:
    from voiceflex.timeline import Timeline


@dataclass(frozen=True)
class Status:
    """The player's state at one moment, in milliseconds; `state`: playing, paused, finished or stopped."""

    title: str
    state: str
    at_ms: int
    total_ms: int
    chapter: int  # 0-based
    chapters: int
    chapter_title: str
    chapter_start_ms: int
    chapter_left_ms: int
    said: str | None  # the cue spoken last (or being spoken)
    next_text: str | None  # the next cue to be spoken
    next_in_ms: int | None
    next_chapter_title: str | None

    @property
    def fraction(self) -> float:
        return self.at_ms / self.total_ms if self.total_ms else 1.0


class StatusModel:
    """Answers "what is happening at sample N" for one timeline, in O(log n) per call."""

    def __init__(self, timeline: Timeline):
        self.timeline = timeline
        self._chapter_starts = [c.start_ms for c in timeline.chapters]
        speech = [e for e in timeline.events if e.kind == "speech"]
        self._speech_starts = [e.start_ms for e in speech]
        self._speech_texts = [e.text or "" for e in speech]

    def at(self, position: int, *, state: str = "playing") -> Status:
        t = self.timeline
        at_ms = min(round(position * 1000 / RATE), t.duration_ms)
        chapter = max(0, bisect.bisect_right(self._chapter_starts, at_ms) - 1)
        current = t.chapters[chapter]
        last = bisect.bisect_right(self._speech_starts, at_ms) - 1
        upcoming = last + 1
        nxt = t.chapters[chapter + 1].title if chapter + 1 < len(t.chapters) else None
        return Status(
            title=t.title,
            state=state,
            at_ms=at_ms,
            total_ms=t.duration_ms,
            chapter=chapter,
            chapters=len(t.chapters),
            chapter_title=current.title,
            chapter_start_ms=current.start_ms,
            chapter_left_ms=max(0, current.end_ms - at_ms),
            said=self._speech_texts[last] if last >= 0 else None,
            next_text=self._speech_texts[upcoming] if upcoming < len(self._speech_texts) else None,
            next_in_ms=self._speech_starts[upcoming] - at_ms if upcoming < len(self._speech_starts) else None,
            next_chapter_title=nxt,
        )


def clock(ms: int) -> str:
    """0:42, 12:05, 1:02:03: whole seconds, rounded down."""
    seconds = max(ms, 0) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def chapter_line(status: Status) -> str:
    """The plain line printed as a chapter starts (output not a terminal): "0:00 Set up"."""
    return f"{clock(status.chapter_start_ms)} {status.chapter_title}"


KEY_HELP = "space pause/resume · n/→ next chapter · p/← back · q quit"


def rich_view(status: Status, *, keys: bool) -> Any:
    """The live display for a terminal (a rich renderable; the caller draws it)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    mark = {"playing": ("▶ playing", "green"), "paused": ("⏸ paused", "yellow"),
            "finished": ("■ done", "cyan"), "stopped": ("■ stopped", "red")}[status.state]
    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_row("", Text(status.title, style="bold"), Text(mark[0], style=mark[1]))
    grid.add_row(f"{status.chapter + 1}/{status.chapters}", Text(status.chapter_title, style="bold cyan"),
                 f"{clock(status.chapter_left_ms)} left")
    grid.add_row("said", Text(status.said or "—", style="italic"), "")
    if status.next_text is not None and status.next_in_ms is not None:
        grid.add_row("next", Text(status.next_text), f"in {clock(status.next_in_ms + 999)}")
    else:
        grid.add_row("next", Text("—"), "")
    if status.next_chapter_title:
        grid.add_row("then", Text(status.next_chapter_title, style="dim"),
                     f"at {clock(status.chapter_start_ms + status.chapter_left_ms)}")
    bar = Table.grid(padding=(0, 2), expand=True)
    bar.add_column(ratio=1)
    bar.add_column(justify="right", no_wrap=True)
    bar.add_row(ProgressBar(total=max(status.total_ms, 1), completed=status.at_ms),
                f"{clock(status.at_ms)} / {clock(status.total_ms)}")
    parts: list[Any] = [grid, bar]
    if keys:
        parts.append(Text(KEY_HELP, style="dim"))
    return Group(*parts)
