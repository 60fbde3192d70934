"""The player's screen: phases from the compiled timeline, the status line, the big digits, NO_COLOR."""

from __future__ import annotations

import io

import pytest

from voiceflex.audio.rate import ms_to_samples
from voiceflex.compiler import compile_routine
from voiceflex.player import StatusModel, rich_view, status_line
from voiceflex.player.bigdigits import big, width
from voiceflex.player.display import clock, countdown
from voiceflex.routine.loader import read_routine

ROUTINE = """\
title: Screen test
steps:
  - name: Set up
    say: Kneel.
  - name: Stretch
    sides: [left, right]
    steps:
      - say: Get ready.
      - hold: 10s
      - rest: 5s
  - name: Breathe
    breathe: {in: 4s, hold: 2s, out: 4s, cycles: 3}
"""
SPEECH_MS = 1000  # every cue lasts a second


@pytest.fixture
def model(tmp_path) -> StatusModel:
    path = tmp_path / "screen.yaml"
    path.write_text(ROUTINE)
    routine, errors = read_routine(path)
    assert not errors
    return StatusModel(compile_routine(routine, lambda text: SPEECH_MS))


def at(model: StatusModel, ms: int, state: str = "playing") -> str:
    return status_line(model.at(ms_to_samples(ms), state=state))


def test_the_timeline_knows_its_holds_rests_and_breaths(model):
    spans = model.timeline.spans
    assert [s.kind for s in spans] == ["HOLD", "REST", "HOLD", "REST"] + ["BREATHE IN", "HOLD", "BREATHE OUT"] * 3
    hold = spans[0]
    assert hold.end_ms - hold.start_ms == 10_000 and hold.side == "left"
    assert [s.cycle for s in spans[4:7]] == [(1, 3)] * 3 and spans[-1].cycle == (3, 3)
    assert "spans" not in model.timeline.to_json()  # SPEC 4's plan keeps its shape


def test_the_status_line_at_given_moments(model):
    t = model.timeline
    hold, rest = t.spans[0], t.spans[1]
    stretch_right = t.chapters[2]
    # 0.4 s into the hold: 9.6 s left shows as 0:10 (a countdown rounds up).
    assert at(model, hold.start_ms + 400) == (
        f"HOLD 0:10 left | Stretch: left | next Stretch: right in "
        f"{countdown(stretch_right.start_ms - hold.start_ms - 400)}")
    assert at(model, rest.start_ms + 4001).startswith("REST 0:01 left | Stretch: left |")
    # Between phases: what comes in this chapter, and when (1.4 s of speech and gap less 0.1 s: 0:02);
    # else the chapter's time.
    assert at(model, stretch_right.start_ms + 100).startswith("NEXT HOLD in 0:02 | Stretch: right |")
    assert at(model, rest.end_ms + 100).startswith("CHAPTER 0:0")
    breath = t.spans[5]  # the first held breath
    assert at(model, breath.start_ms).startswith("HOLD 0:02 left, cycle 1 of 3 | Breathe | end in ")
    assert at(model, 0, state="paused").startswith("PAUSED | CHAPTER ")
    assert at(model, t.duration_ms, state="finished") == "DONE | CHAPTER 0:00 left | Breathe | end in 0:00"


def test_side_and_round_are_named_where_the_chapter_title_does_not(tmp_path):
    path = tmp_path / "unnamed.yaml"
    path.write_text("title: Unnamed\nsteps:\n  - repeat: 2\n    steps:\n      - sides: [left, right]\n"
                    "        steps:\n          - hold: 5s\n")
    routine, errors = read_routine(path)
    assert not errors
    model = StatusModel(compile_routine(routine, lambda text: SPEECH_MS))
    last = model.timeline.spans[-1]
    assert at(model, last.start_ms).startswith("HOLD 0:05 left, side right, round 2 of 2 | Unnamed | end in ")


def test_the_next_chapter_time_depends_only_on_the_position(model):
    # What `--from`, `n` and `p` do is set the position: the countdown to the
    # next chapter is its start less the position, never a stale clock.
    t = model.timeline
    for chapter, following in zip(t.chapters, t.chapters[1:]):
        for into in (0, 1, 999, 1000, 1001):
            ms = chapter.start_ms + into
            line = at(model, ms)
            assert line.endswith(f"| next {following.title} in {countdown(following.start_ms - ms)}"), line


def test_times_round_one_way():
    assert [countdown(ms) for ms in (0, 1, 999, 1000, 1001, 59_001)] == ["0:00", "0:01", "0:01", "0:01", "0:02", "1:00"]
    assert [clock(ms) for ms in (999, 1000, 3_600_000)] == ["0:00", "0:01", "1:00:00"]


def test_big_digits_are_blocks_as_wide_as_said():
    rows = big("1:05")
    assert len(rows) == 5 and max(len(r) for r in rows) <= width("1:05")
    assert set("".join(rows)) <= {"█", " "}
    assert big("8")[0] == "██████" and big("8")[1] == "██  ██"


def render(model, ms, *, no_color: bool, state="playing") -> str:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=90, force_terminal=True, color_system="truecolor", no_color=no_color)
    console.print(rich_view(model.at(ms_to_samples(ms), state=state), keys=True))
    return out.getvalue()


def test_the_rich_view_shows_the_phase_big_and_the_status_line(model):
    from rich.console import Console

    hold = model.timeline.spans[0]
    console = Console(width=90, record=True, file=io.StringIO())
    status = model.at(ms_to_samples(hold.start_ms + 2500), state="paused")
    console.print(rich_view(status, keys=True))
    text = console.export_text()
    assert status_line(status) in text
    for expected in ("HOLD", "Stretch: left", "chapter 2 of 4", "paused", "then", "Stretch: right",
                     "track 0:", "space"):
        assert expected in text, (expected, text)
    for row in big("0:08"):
        assert row in text


def test_colour_per_phase_and_none_under_no_color(model):
    hold, rest = model.timeline.spans[0], model.timeline.spans[1]
    coloured_hold = render(model, hold.start_ms + 10, no_color=False)
    coloured_rest = render(model, rest.start_ms + 10, no_color=False)
    assert "\x1b[1;33m" in coloured_hold and "\x1b[1;32m" in coloured_rest  # yellow hold, green rest
    plain = render(model, hold.start_ms + 10, no_color=True)
    assert "\x1b[1;33m" not in plain and "38;" not in plain and "\x1b[33" not in plain
    assert "HOLD" in plain


def test_no_color_from_the_environment(model, monkeypatch):
    from rich.console import Console

    monkeypatch.setenv("NO_COLOR", "1")
    assert Console(force_terminal=True).no_color
