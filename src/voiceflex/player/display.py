"""What the player shows: the phase and chapter at a position, as a status line, big digits (rich) or chapter lines."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.player import bigdigits
from voiceflex.routine.durations import format_ms as clock  # a track time, whole seconds rounded down

if TYPE_CHECKING:
    from voiceflex.timeline import Span, Timeline


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
    chapter_left_ms: int  # also the countdown to the next chapter
    said: str | None  # the cue spoken last (or being spoken)
    next_text: str | None  # the next cue to be spoken
    next_in_ms: int | None
    next_chapter_title: str | None
    phase: Span | None = None  # the hold, rest or breath phase at this moment
    phase_left_ms: int = 0
    coming: Span | None = None  # between phases: the next one, if it starts in this chapter
    coming_in_ms: int = 0

    @property
    def fraction(self) -> float:
        return self.at_ms / self.total_ms if self.total_ms else 1.0


class StatusModel:
    """Answers "what is happening at sample N" for one timeline, in O(log n) per call.

    Everything is worked out from the position alone, so a skip, a resume or
    `--from` can never leave a stale time on the screen.
    """

    def __init__(self, timeline: Timeline):
        self.timeline = timeline
        # Compared in samples, as the player seeks (ms_to_samples): a skip to
        # a chapter's first sample is in that chapter.
        self._chapter_starts = [ms_to_samples(c.start_ms) for c in timeline.chapters]
        speech = [e for e in timeline.events if e.kind == "speech"]
        self._speech_ms = [e.start_ms for e in speech]
        self._speech_starts = [ms_to_samples(ms) for ms in self._speech_ms]
        self._speech_texts = [e.text or "" for e in speech]
        self._spans = timeline.spans
        self._span_starts = [ms_to_samples(s.start_ms) for s in timeline.spans]

    def at(self, position: int, *, state: str = "playing") -> Status:
        t = self.timeline
        position = max(0, min(position, ms_to_samples(t.duration_ms)))
        chapter = max(0, bisect.bisect_right(self._chapter_starts, position) - 1)
        current = t.chapters[chapter]
        last = bisect.bisect_right(self._speech_starts, position) - 1
        upcoming = last + 1
        nxt = t.chapters[chapter + 1].title if chapter + 1 < len(t.chapters) else None
        phase, coming = self._phase(position)
        if coming is not None and coming.start_ms >= current.end_ms:
            coming = None

        def until(ms: int) -> int:
            """Milliseconds from the position to time `ms`, to within a sample."""
            return max(0, (ms_to_samples(ms) - position) * 1000 // RATE)

        return Status(
            title=t.title,
            state=state,
            at_ms=position * 1000 // RATE,
            total_ms=t.duration_ms,
            chapter=chapter,
            chapters=len(t.chapters),
            chapter_title=current.title,
            chapter_start_ms=current.start_ms,
            chapter_left_ms=until(current.end_ms),
            said=self._speech_texts[last] if last >= 0 else None,
            next_text=self._speech_texts[upcoming] if upcoming < len(self._speech_texts) else None,
            next_in_ms=until(self._speech_ms[upcoming]) if upcoming < len(self._speech_ms) else None,
            next_chapter_title=nxt,
            phase=phase,
            phase_left_ms=until(phase.end_ms) if phase else 0,
            coming=coming,
            coming_in_ms=until(coming.start_ms) if coming else 0,
        )

    def _phase(self, position: int) -> tuple[Span | None, Span | None]:
        """The span at `position`, else None and the next span (None after the last)."""
        # Spans never overlap (a breath's phases follow each other, holds do not nest).
        i = bisect.bisect_right(self._span_starts, position) - 1
        if i >= 0 and position < ms_to_samples(self._spans[i].end_ms):
            return self._spans[i], None
        return None, self._spans[i + 1] if i + 1 < len(self._spans) else None


def countdown(ms: int) -> str:
    """A time left, rounded up to the second: it shows 0:00 only when nothing is left."""
    return clock(-(-max(ms, 0) // 1000) * 1000)


def chapter_line(status: Status) -> str:
    """The plain line printed as a chapter starts (output not a terminal): "0:00 Set up"."""
    return f"{clock(status.chapter_start_ms)} {status.chapter_title}"


def phase_label(status: Status) -> str:
    """"HOLD", "BREATHE IN, cycle 5 of 11", "REST, round 2 of 3"; between phases "NEXT HOLD" or "CHAPTER"."""
    span = status.phase or status.coming
    if span is None:
        return "CHAPTER"
    parts = [span.kind if status.phase else f"NEXT {span.kind}"]
    if span.cycle:
        parts.append(f"cycle {span.cycle[0]} of {span.cycle[1]}")
    # A named `sides` or `repeat` already says its side or round in the chapter title.
    if span.side and not status.chapter_title.endswith(f": {span.side}"):
        parts.append(f"side {span.side}")
    if span.round and not status.chapter_title.endswith(f": {span.round[0]} of {span.round[1]}"):
        parts.append(f"round {span.round[0]} of {span.round[1]}")
    return ", ".join(parts)


_STATES = {"paused": "PAUSED", "finished": "DONE", "stopped": "STOPPED"}


def status_line(status: Status) -> str:
    """One line a program can read; its format is documented in docs/play.md.

    `[PAUSED | ]KIND M:SS left[, detail...] | CHAPTER | next TITLE in M:SS`
    (`end in M:SS` in the last chapter).  Between phases the first field is
    `NEXT KIND in M:SS[, detail...]`, or `CHAPTER M:SS left` when no phase
    comes in this chapter.  Every time is a countdown, rounded up.
    """
    fields = [_STATES[status.state]] if status.state in _STATES else []
    kind, _, detail = phase_label(status).partition(", ")
    detail = f", {detail}" if detail else ""
    if status.phase is not None:
        fields.append(f"{kind} {countdown(status.phase_left_ms)} left{detail}")
    elif status.coming is not None:
        fields.append(f"{kind} in {countdown(status.coming_in_ms)}{detail}")
    else:
        fields.append(f"CHAPTER {countdown(status.chapter_left_ms)} left")
    fields.append(status.chapter_title)
    if status.next_chapter_title is not None:
        fields.append(f"next {status.next_chapter_title} in {countdown(status.chapter_left_ms)}")
    else:
        fields.append(f"end in {countdown(status.chapter_left_ms)}")
    return " | ".join(fields)


# One colour per kind of phase, so the phase reads from across the room;
# rich drops them under NO_COLOR.
PHASE_STYLES = {"HOLD": "bold yellow", "REST": "bold green", "BREATHE IN": "bold cyan",
                "BREATHE OUT": "bold blue", None: "bold"}
KEY_HELP = "space pause/resume · n/→ next chapter · p/← back · q quit"
# Below this many columns the big digits and the table do not fit: the status line alone.
MIN_COLUMNS = 60


def rich_view(status: Status, *, keys: bool) -> Any:
    """The live display for a terminal of MIN_COLUMNS or more (a rich renderable; the caller draws it)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    span = status.phase or status.coming
    held_breath = span is not None and span.kind == "HOLD" and span.cycle is not None
    style = "bold magenta" if held_breath else PHASE_STYLES.get(span.kind if span else None, "bold")
    left = (status.phase_left_ms if status.phase else status.coming_in_ms if status.coming
            else status.chapter_left_ms)
    digits = Text("\n".join(bigdigits.big(countdown(left))), style=style, no_wrap=True)
    label = Table.grid()
    label.add_column(no_wrap=True, overflow="ellipsis")
    label.add_row(Text(phase_label(status), style=style))
    label.add_row(Text(status.chapter_title, style="bold"))
    label.add_row(Text(status.title, style="dim"))
    label.add_row(Text(f"chapter {status.chapter + 1} of {status.chapters}", style="dim"))
    mark = {"playing": ("▶ playing", "green"), "paused": ("⏸ paused", "yellow"),
            "finished": ("■ done", "cyan"), "stopped": ("■ stopped", "red")}[status.state]
    label.add_row(Text(mark[0], style=mark[1]))
    top = Table.grid(padding=(0, 3))
    top.add_column(no_wrap=True, width=bigdigits.width(countdown(left)))
    top.add_column(ratio=1)
    top.add_row(digits, label)

    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_row("said", Text(status.said or "—", style="italic"), "")
    if status.next_text is not None and status.next_in_ms is not None:
        grid.add_row("next", Text(status.next_text), f"in {countdown(status.next_in_ms)}")
    if status.next_chapter_title:
        grid.add_row("then", Text(status.next_chapter_title, style="dim"),
                     f"in {countdown(status.chapter_left_ms)}")
    bar = Table.grid(padding=(0, 2), expand=True)
    bar.add_column(ratio=1)
    bar.add_column(justify="right", no_wrap=True)
    bar.add_row(ProgressBar(total=max(status.total_ms, 1), completed=status.at_ms),
                f"track {clock(status.at_ms)} / {clock(status.total_ms)}")
    parts: list[Any] = [Text(status_line(status), overflow="fold"), top, grid, bar]
    if keys:
        parts.append(Text(KEY_HELP, style="dim"))
    return Group(*parts)
