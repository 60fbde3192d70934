"""The compiled timeline: every cue and tone with its time in milliseconds, and the chapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voiceflex.errors import Diagnostic, Location


@dataclass(frozen=True)
class Event:
    """One sound on the timeline: `kind` is "speech" (with `text`) or "tone" (with `name`)."""

    kind: str
    start_ms: int
    end_ms: int
    chapter: int
    source: Location
    text: str | None = None
    name: str | None = None
    freq_hz: float | tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "start_ms": self.start_ms, "end_ms": self.end_ms}
        if self.kind == "speech":
            data["text"] = self.text
        else:
            data["name"] = self.name
            data["freq_hz"] = list(self.freq_hz) if isinstance(self.freq_hz, tuple) else self.freq_hz
        data["chapter"] = self.chapter
        data["source"] = str(self.source)
        return data


@dataclass(frozen=True)
class Chapter:
    title: str
    start_ms: int
    end_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "start_ms": self.start_ms, "end_ms": self.end_ms}


@dataclass(frozen=True)
class Span:
    """A timed phase the listener is in: a hold, a rest or one phase of a breath (for the player's screen).

    `kind` is HOLD, REST, BREATHE IN, BREATHE OUT or HOLD (a held breath,
    with `cycle`); `side` and `round` say which copy of a `sides` or
    `repeat` it is in.  Not part of the plan's JSON.
    """

    kind: str
    start_ms: int
    end_ms: int
    cycle: tuple[int, int] | None = None
    side: str | None = None
    round: tuple[int, int] | None = None


@dataclass(frozen=True)
class Timeline:
    """What a routine sounds like: `plan` prints it, `export` and `play` render it."""

    title: str
    duration_ms: int
    chapters: tuple[Chapter, ...]
    events: tuple[Event, ...]
    # What the author may want to fix though it is no error (not part of the plan's JSON).
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False)
    spans: tuple[Span, ...] = field(default=(), compare=False)  # sorted by start; not in to_json

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "duration_ms": self.duration_ms,
            "chapters": [c.to_json() for c in self.chapters],
            "events": [e.to_json() for e in self.events],
        }


def speech_texts(timeline: Timeline) -> list[str]:
    """The distinct texts spoken in a timeline, in order of first use."""
    return list(dict.fromkeys(e.text for e in timeline.events if e.kind == "speech"))
