"""Compile a routine into its timeline: steps laid out in time, placeholders filled, limits and overlaps checked."""

from __future__ import annotations

import bisect
import re
import dataclasses
from typing import Any, Callable

from voiceflex.errors import Diagnostic, Location, RoutineError
from voiceflex.routine.durations import MS_PER_HOUR, duration_words, format_clock
from voiceflex.routine.loader import PLACEHOLDER_PATTERN
from voiceflex.routine.model import (
    Breathe, Hold, Include, Pause, PlayTone, Repeat, Routine, Say, Sides, Step, Text,
)
from voiceflex.routine.schema import MAX_EVENTS, MAX_HOURS, MAX_TEXT
from voiceflex.routine.values import short
from voiceflex.spoken import describe, has_words, number_words, strip_unspeakable
from voiceflex.timeline import Chapter, Event, Span, Timeline

# docs/routine-format.md, sections 5-8.  Pure: the same routine and speech lengths always
# give the same timeline.  Errors are collected (each location once) and raised
# together at the end.

SpeechLength = Callable[[str], int]

BREATHE_IN, HOLD, BREATHE_OUT = "Breathe in", "Hold", "Breathe out"
_ZERO: SpeechLength = lambda text: 0  # noqa: E731 - for structure-only compiles


def compile_routine(routine: Routine, speech_ms: SpeechLength = _ZERO) -> Timeline:
    """The timeline of `routine`, with each speech cue lasting `speech_ms(text)` milliseconds.

    With the default (every cue zero-length) the result has every event and
    text but no real speech lengths: enough to validate a routine and to
    list the texts to synthesize.
    """
    return _Compiler(routine, speech_ms).run()


class _Stop(Exception):
    """A limit was crossed; compiling further would only repeat the error."""


class _Compiler:
    def __init__(self, routine: Routine, speech_ms: SpeechLength):
        self.routine = routine
        self.speech_ms = speech_ms
        self.tones = routine.tones
        self.gap = routine.voice.gap_ms
        self.english = routine.voice.language.lower().startswith("en")
        self.events: list[Event] = []  # their chapter set once the chapters are known
        self.chapters: list[tuple[int, str]] = []
        self.spans: list[Span] = []
        self.rests: list[tuple[int, Hold]] = []  # (start, rest) to announce, once the chapters are known
        self.errors: dict[tuple[Location, str], None] = {}
        self.warnings: dict[tuple[Location, str], None] = {}
        self.limit_ms = MAX_HOURS * MS_PER_HOUR

    def error(self, location: Location, message: str) -> None:
        self.errors[(location, message)] = None

    def run(self) -> Timeline:
        cursor = 0
        try:
            for index, step in enumerate(self.routine.steps):
                if index == 0 and not step.name:
                    self.chapters.append((0, self.routine.title))
                cursor = self.step(step, cursor, {}, top=True)
            self.announce(cursor)
        except _Stop:
            pass
        self.check_overlaps()
        if self.errors:
            raise RoutineError([Diagnostic(loc, msg) for loc, msg in self.errors])
        return self.timeline(cursor)

    # ---- bookkeeping -------------------------------------------------------

    def fill(self, text: Text, bound: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            token, name = match.group(), match.group(1)
            if token in ("{{", "}}"):
                return token[0]
            if name not in bound:
                where = "a hold" if name in ("seconds", "duration") else ("`sides`" if name == "side" else "`repeat`")
                self.error(text.location, f"`{{{name}}}` is only known inside {where}")
                return token
            return str(bound[name])
        filled = PLACEHOLDER_PATTERN.sub(replace, text.text)
        if len(filled) > MAX_TEXT:  # a long side name can take a short text past the limit
            self.error(text.location, f"with `{{side}}` filled in this text is {len(filled)} characters; "
                                      f"a cue may have at most {MAX_TEXT}")
        return filled

    def speech(self, start: int, text: str, source: Location) -> int:
        self.speakable(text, source)
        end = start + max(0, int(self.speech_ms(text)))
        self.add(Event("speech", start, end, 0, source, text=text))  # chapters come last
        return end

    def speakable(self, text: str, source: Location) -> None:
        """Report a cue no voice can say (an error) or one with characters it cannot (a warning)."""
        dropped = strip_unspeakable(text)[1]
        named = ", ".join(describe(c) for c in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
        shown = f'"{short(text, 40)}"' if text.isprintable() else repr(short(text, 40))
        if not has_words(text):
            what = f"only {named}" if dropped else "only punctuation"
            self.error(source, f"nothing in {shown} can be spoken ({what}); write the cue in words")
        elif dropped:
            self.warnings[(source, f"{named} cannot be spoken and {'is' if len(dropped) == 1 else 'are'} "
                                   f"left out of {shown}")] = None

    def tone(self, start: int, name: str, source: Location, length: int | None = None) -> int:
        spec = self.tones[name]
        end = start + (length if length is not None else spec.ms)
        freq = (spec.freq, spec.freq_end) if spec.is_glide else spec.freq
        self.add(Event("tone", start, end, 0, source, name=name, freq_hz=freq))
        return end

    def add(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            self.error(event.source, f"the routine has more than {MAX_EVENTS:,} cues and tones")
            raise _Stop

    def advance(self, step: Step, cursor: int) -> int:
        if cursor > self.limit_ms:
            self.error(step.location, f"the routine passes the {MAX_HOURS}-hour limit here "
                                      f"({cursor / MS_PER_HOUR:.1f} h)")
            raise _Stop
        return cursor

    def afford(self, step: Step, cursor: int, copies: int, one: Step | tuple[Step, ...]) -> None:
        """Refuse before expanding what would cross a limit (nested repeats multiply)."""
        min_ms, events = self.cost(one)
        if cursor + copies * min_ms > self.limit_ms:
            self.error(step.location, f"this makes the routine longer than {MAX_HOURS} hours "
                                      f"({copies} x at least {min_ms / 1000:g} s)")
            raise _Stop
        if len(self.events) + copies * events > MAX_EVENTS:
            self.error(step.location, f"this makes more than {MAX_EVENTS:,} cues and tones "
                                      f"({copies} x {events:,})")
            raise _Stop

    def cost(self, steps: Step | tuple[Step, ...]) -> tuple[int, int]:
        """A lower bound on the length and an upper bound on the events of steps."""
        if isinstance(steps, tuple):
            parts = [self.cost(s) for s in steps]
            return sum(p[0] for p in parts), sum(p[1] for p in parts)
        s = steps
        if isinstance(s, Say):
            return self.gap, 1
        if isinstance(s, Pause):
            return s.ms, 0
        if isinstance(s, PlayTone):
            return self.tones[s.tone].ms, 1
        if isinstance(s, Hold):
            # Counted as made by hold(): start tone, say, halfway, countdown, cues, ticks, end tone.
            events = (s.start_tone + (s.say is not None) + (s.halfway is not None) + (s.countdown or 0)
                      + len(s.cues) + (s.ms // 1000 if s.tick else 0) + 1)
            events += not s.start_tone and self.routine.announce  # "Rest, 10 seconds."
            return s.ms + self.tones["end"].ms, events
        if isinstance(s, Sides):
            ms, ev = self.cost(s.steps)
            n = len(s.sides)
            return n * ms + (n - 1) * (self.tones["switch"].ms + self.gap), n * ev + 2 * (n - 1)
        if isinstance(s, Repeat):
            ms, ev = self.cost(s.steps)
            rest = (s.rest_ms + self.tones["end"].ms) if s.rest_ms else 0
            rest_events = 1 if s.rest_ms else 0  # a rest between rounds makes only its end tone
            return s.count * ms + (s.count - 1) * rest, s.count * ev + (s.count - 1) * rest_events
        if isinstance(s, Breathe):
            cycle = s.in_ms + s.hold_ms + s.out_ms + s.hold_out_ms
            cycles = s.cycles if s.cycles is not None else (s.for_ms or 0) // cycle
            return cycles * cycle, cycles * 6
        if isinstance(s, Include):
            return self.cost(s.steps)
        raise AssertionError(type(s))  # pragma: no cover

    # ---- steps -------------------------------------------------------------

    def step(self, step: Step, cursor: int, bound: dict[str, Any], top: bool = False) -> int:
        named = top and step.name is not None
        if named and not isinstance(step, (Sides, Repeat)):
            self.chapters.append((cursor, step.name))
        if isinstance(step, Say):
            cursor = self.speech(cursor, self.fill(step.text, bound), step.text.location) + self.gap
        elif isinstance(step, Pause):
            cursor += step.ms
        elif isinstance(step, PlayTone):
            cursor = self.tone(cursor, step.tone, step.location)
        elif isinstance(step, Hold):
            cursor = self.hold(step, cursor, bound)
        elif isinstance(step, Sides):
            self.afford(step, cursor, len(step.sides), step.steps)
            for i, side in enumerate(step.sides):
                inner = {**bound, "side": side}
                if i > 0:
                    cursor = self.tone(cursor, "switch", step.location)
                    cursor = self.speech(cursor, self.fill(step.switch, inner), step.switch.location) + self.gap
                if named:
                    self.chapters.append((cursor, f"{step.name}: {side}"))
                cursor = self.steps(step.steps, cursor, inner)
        elif isinstance(step, Repeat):
            self.afford(step, cursor, step.count, step.steps)
            for r in range(1, step.count + 1):
                inner = {**bound, "round": r, "rounds": step.count}
                if named:
                    self.chapters.append((cursor, f"{step.name}: {r} of {step.count}"))
                cursor = self.steps(step.steps, cursor, inner)
                if step.rest_ms and r < step.count:
                    rest = Hold(step.rest_location or step.location, None, step.rest_ms, start_tone=False)
                    cursor = self.hold(rest, cursor, inner)
        elif isinstance(step, Breathe):
            cursor = self.breathe(step, cursor, bound)
        elif isinstance(step, Include):
            cursor = self.steps(step.steps, cursor, bound)
        else:  # pragma: no cover
            raise AssertionError(type(step))
        return self.advance(step, cursor)

    def steps(self, steps: tuple[Step, ...], cursor: int, bound: dict[str, Any]) -> int:
        for step in steps:
            cursor = self.step(step, cursor, bound)
        return cursor

    def hold(self, h: Hold, t0: int, bound: dict[str, Any]) -> int:
        d = h.ms
        inner = {**bound, "seconds": d // 1000, "duration": duration_words(d)}
        self.span("HOLD" if h.start_tone else "REST", t0, t0 + d, bound)
        if self.routine.announce and not h.start_tone and h.say is None:
            self.rests.append((t0, h))
        first = len(self.events)
        say_at = self.tone(t0, "start", h.location) if h.start_tone else t0
        if h.say:
            self.speech(say_at, self.fill(h.say, inner), h.say.location)
        if h.halfway:
            self.speech(t0 + d // 2, self.fill(h.halfway, inner), h.halfway.location)
        if h.countdown:
            where = h.countdown_location or h.location
            if h.countdown * 1000 > d:
                self.error(where, f"a countdown from {h.countdown} needs a hold of at least "
                                  f"{h.countdown} s; this one lasts {d / 1000:g} s")
            else:
                for k in range(h.countdown, 0, -1):
                    if h.countdown_voice:
                        self.speech(t0 + d - k * 1000, self.number(k), where)
                    else:
                        self.tone(t0 + d - k * 1000, "tick", where)
        for cue in h.cues:
            at = cue.at_ms if cue.at_ms >= 0 else d + cue.at_ms
            if not 0 <= at <= d:
                self.error(cue.location, f"cue at {cue.at_ms / 1000:g} s is outside the hold (0 to {d / 1000:g} s)")
                continue
            if cue.say:
                self.speech(t0 + at, self.fill(cue.say, inner), cue.say.location)
            else:
                self.tone(t0 + at, cue.tone, cue.location)
        if h.tick:
            starts, ends = _merged(self.events[first:])
            length = self.tones["tick"].ms
            for k in range(1, (d - 1) // 1000 + 1):
                t = t0 + k * 1000
                # The last sound starting before the tick ends is the only one that can
                # overlap it: a search, not a scan (a 6-hour hold has 21,600 ticks).
                i = bisect.bisect_left(starts, t + length) - 1
                if i < 0 or ends[i] <= t:
                    self.tone(t, "tick", h.location)
        return self.tone(t0 + d, "end", h.location)

    def announce(self, duration: int) -> None:
        """`announce: true`: each rest without its own `say` begins "Rest, 10 seconds. Next: TITLE."

        "Next" names the chapter that follows when it starts before any other
        hold, rest or breath: the rest is the last thing before it.
        """
        starts = [start for start, _ in self.chapters]
        span_starts = sorted(s.start_ms for s in self.spans)
        for t0, rest in self.rests:
            end = t0 + rest.ms
            text = f"Rest, {duration_words(rest.ms)}."
            i = bisect.bisect_left(starts, end)
            if i < len(starts) and starts[i] < duration:
                j = bisect.bisect_left(span_starts, end)
                if j == len(span_starts) or span_starts[j] >= starts[i]:
                    text += f" Next: {self.chapters[i][1]}."
            self.speech(t0, text, rest.location)

    def span(self, kind: str, start: int, end: int, bound: dict[str, Any],
             cycle: tuple[int, int] | None = None) -> None:
        rounds = (bound["round"], bound["rounds"]) if "round" in bound else None
        self.spans.append(Span(kind, start, end, cycle, bound.get("side"), rounds))

    def breathe(self, b: Breathe, cursor: int, bound: dict[str, Any]) -> int:
        cycle = b.in_ms + b.hold_ms + b.out_ms + b.hold_out_ms
        cycles = b.cycles if b.cycles is not None else (b.for_ms or 0) // cycle
        if cycles < 1:
            self.error(b.location, f"`for: {b.for_ms / 1000:g}s` is shorter than one breath "
                                   f"({cycle / 1000:g} s)")
            return cursor
        self.afford(b, cursor, 1, b)
        spoken = cycles if b.voice is None else b.voice
        phases = [(b.in_ms, BREATHE_IN, "inhale"), (b.hold_ms, HOLD, None),
                  (b.out_ms, BREATHE_OUT, "exhale"), (b.hold_out_ms, HOLD, None)]
        for c in range(cycles):
            t = cursor + c * cycle
            for length, words, glide in phases:
                if length <= 0:
                    continue
                if glide:
                    self.tone(t, glide, b.location, length)
                if c < spoken:
                    self.speech(t, words, b.location)
                self.span(words.upper(), t, t + length, bound, (c + 1, cycles))
                t += length
        return cursor + cycles * cycle

    def number(self, k: int) -> str:
        return number_words(k) if self.english else str(k)

    # ---- results -----------------------------------------------------------

    def check_overlaps(self) -> None:
        speech = sorted((e for e in self.events if e.kind == "speech"), key=lambda e: (e.start_ms, e.end_ms))
        for a, b in zip(speech, speech[1:]):
            if a.end_ms > b.start_ms:
                self.error(a.source, f'"{short(a.text or "", 40)}" lasts {(a.end_ms - a.start_ms) / 1000:.2f} s and runs into '
                                     f'"{short(b.text or "", 40)}" at {_clock(b.start_ms)} ({b.source.file}:{b.source.line}); '
                                     "shorten or move one of them")

    def timeline(self, cursor: int) -> Timeline:
        self.events.sort(key=lambda e: e.start_ms)  # stable: ties keep the order they were made in
        duration = max([cursor, *(e.end_ms for e in self.events)])
        starts = [start for start, _ in self.chapters] + [duration]
        chapters = tuple(Chapter(title, start, starts[i + 1]) for i, (start, title) in enumerate(self.chapters))
        events, index = [], 0
        for e in self.events:
            while index + 1 < len(chapters) and chapters[index + 1].start_ms <= e.start_ms:
                index += 1
            events.append(dataclasses.replace(e, chapter=index))
        warnings = tuple(Diagnostic(loc, msg) for loc, msg in self.warnings)
        spans = tuple(sorted(self.spans, key=lambda s: s.start_ms))
        return Timeline(self.routine.title, duration, chapters, tuple(events), warnings, spans)


def _merged(events: list[Event]) -> tuple[list[int], list[int]]:
    """Starts and ends of the spans `events` cover, overlapping or touching ones joined, in order."""
    starts: list[int] = []
    ends: list[int] = []
    for e in sorted(events, key=lambda e: e.start_ms):
        if ends and e.start_ms <= ends[-1]:
            ends[-1] = max(ends[-1], e.end_ms)
        else:
            starts.append(e.start_ms)
            ends.append(e.end_ms)
    return starts, ends


def _clock(ms: int) -> str:
    return format_clock(ms, decimals=3)  # to the millisecond: overlaps can be that short
