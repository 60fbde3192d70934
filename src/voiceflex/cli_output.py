"""What the command line shows: tables, clock times, warnings, progress bars and the live play view."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from voiceflex.errors import RoutineError, format_diagnostics


def warn(warning) -> None:
    """A routine warning on stderr, located like an error: `FILE:LINE:COL: warning: ...`."""
    print(f"{warning.location}: warning: {warning.message}", file=sys.stderr)


def warn_all(timeline) -> None:
    for warning in timeline.warnings:
        warn(warning)


def measured(value: float | int | None, unit: str) -> str:
    if value is None:
        return "none"
    return (f"{value:.1f} {unit}" if isinstance(value, float) else f"{value} {unit}").rstrip()



def clock(ms: int) -> str:
    from voiceflex.routine.durations import format_clock

    return format_clock(ms)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def print_diagnostics(exc: RoutineError, stream) -> None:
    stream.write(format_diagnostics(exc, caret=stream.isatty()))


def table(headers: list[str], rows: list[tuple[str, ...]]) -> None:
    """A table: drawn with rich on a terminal, plain aligned columns otherwise."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [tuple(headers), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@contextmanager
def play_view(timeline, *, keys: bool) -> Iterator:
    """The player's display: big digits on a terminal, the status line alone on a narrow or dumb one,
    else one line per chapter as it starts (docs/play.md)."""
    from voiceflex.player import MIN_COLUMNS, StatusModel, chapter_line, rich_view, status_line

    model = StatusModel(timeline)

    def status(session, how: str | None):
        state = ("finished" if session.finished else "stopped" if how == "quit"
                 else "paused" if session.paused else "playing")
        return model.at(session.position(), state=state)

    if sys.stdout.isatty():
        from rich.console import Console
        from rich.live import Live

        console = Console()
        if os.environ.get("TERM") == "dumb" or console.width < MIN_COLUMNS:
            # No cursor movement: the line is rewritten in place with a carriage return.
            shown = [""]

            def show_line(session, how: str | None = None) -> None:
                line = status_line(status(session, how))[:max(console.width - 1, 1)]
                if line != shown[0]:
                    sys.stdout.write("\r" + line.ljust(len(shown[0])))
                    sys.stdout.flush()
                    shown[0] = line

            try:
                yield show_line
            finally:
                sys.stdout.write("\n")
            return

        with Live(console=console, auto_refresh=False) as live:
            def show(session, how: str | None = None) -> None:
                live.update(rich_view(status(session, how), keys=keys), refresh=True)

            yield show
        return

    printed: list[int] = []

    def show(session, how: str | None = None) -> None:
        now = status(session, how)
        if now.state == "playing" and (not printed or printed[-1] != now.chapter):
            printed.append(now.chapter)
            print(chapter_line(now), flush=True)

    yield show


@contextmanager
def voice_progress(label: str) -> Iterator:
    """A progress bar on stderr while cues are synthesized; silent when not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
