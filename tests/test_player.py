"""The player without a sound card: a fake backend on a fake clock records what would have been heard."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voiceflex import pipeline
from voiceflex.planned import render as render_plan
from voiceflex.audio.rate import RATE
from voiceflex.errors import DeviceError, Location, UsageError
from voiceflex.player import (
    Command, KeyDecoder, NoKeys, Player, StatusModel, chapter_line, find_chapter, render_track, rich_view,
)
from voiceflex.player.simpleaudio_output import SimpleaudioOutput
from voiceflex.timeline import Chapter, Event, Timeline

S = RATE  # samples per second


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeStream:
    """An ideal device: plays in real (fake) time and stops exactly where asked."""

    def __init__(self, backend: FakeOutput, samples: np.ndarray):
        self.backend = backend
        self.samples = samples.copy()
        self.offset = backend.offset_of(samples)
        self.t0 = backend.clock()
        self.cut: int | None = None

    def played(self) -> int:
        if self.cut is not None:
            return self.cut
        return min(int((self.backend.clock() - self.t0) * RATE), len(self.samples))

    def done(self) -> bool:
        return self.cut is not None or self.played() >= len(self.samples)

    def halt(self, *, exact: bool) -> int:
        self.cut = self.played()
        return self.cut

    def heard(self) -> np.ndarray:
        return self.samples[:self.played()]


class FakeOutput:
    name = "fake"

    def __init__(self, clock: Clock, track: np.ndarray | None = None):
        self.track = track
        self.clock = clock
        self.streams: list[FakeStream] = []

    def offset_of(self, view: np.ndarray) -> int | None:
        """Where in the track a buffer handed to play() starts (it is a view, not a copy)."""
        if self.track is None:
            return None
        assert np.shares_memory(view, self.track)
        return (view.__array_interface__["data"][0] - self.track.__array_interface__["data"][0]) // 2

    def play(self, samples: np.ndarray, ready=None) -> FakeStream:
        if ready is not None:
            ready(len(samples))  # an ideal device asks for all it will play
        self.streams.append(FakeStream(self, samples))
        return self.streams[-1]

    def heard(self) -> np.ndarray:
        return np.concatenate([s.heard() for s in self.streams])


class ScriptedKeys:
    """Commands at given (fake) times, as if typed."""

    def __init__(self, clock: Clock, script: list[tuple[float, Command]]):
        self.clock = clock
        self.script = sorted(script, key=lambda item: item[0])

    def read(self, timeout: float) -> list[Command]:
        until = self.clock.now + timeout
        if self.script and self.script[0][0] <= until:
            self.clock.now = max(self.clock.now, self.script[0][0])
            return [self.script.pop(0)[1]]
        self.clock.now = until
        return []


def make_timeline(chapter_seconds: list[float]) -> Timeline:
    here = Location("t.yaml", 1, 1)
    chapters, events, start = [], [], 0
    for i, seconds in enumerate(chapter_seconds):
        end = start + int(seconds * 1000)
        chapters.append(Chapter(f"Part {i + 1}", start, end))
        events.append(Event("speech", start, start + 500, i, here, text=f"Cue {i + 1}a"))
        events.append(Event("tone", start + 600, start + 700, i, here, name="tick", freq_hz=1000.0))
        events.append(Event("speech", start + 1000, start + 1500, i, here, text=f"Cue {i + 1}b"))
        start = end
    return Timeline("Test", start, tuple(chapters), tuple(events))


def make_player(chapter_seconds=(4, 4, 4)):
    timeline = make_timeline(list(chapter_seconds))
    total = round(timeline.duration_ms * RATE / 1000)
    track = (np.arange(total) % 30000 + 1).astype(np.int16)  # every sample distinct from its neighbours, none zero
    clock = Clock()
    backend = FakeOutput(clock, track)
    return Player(track, timeline, backend), backend, clock


def play(player, clock, script=(), start_at=0):
    return player.run(start_at=start_at, keys=ScriptedKeys(clock, list(script)))


# ---- playing ---------------------------------------------------------------------


def test_plays_the_whole_track_once_and_returns_when_it_was_played():
    player, backend, clock = make_player()
    outcome = play(player, clock)
    assert outcome.how == "finished"
    assert len(backend.streams) == 1
    assert np.array_equal(backend.heard(), player.track)
    assert clock.now >= len(player.track) / RATE  # not before the last sample


def test_without_keys_it_just_waits():
    player, backend, clock = make_player((1,))
    outcome = player.run(keys=NoKeys(sleep=clock.sleep))
    assert outcome.how == "finished"
    assert np.array_equal(backend.heard(), player.track)


def test_pause_and_resume_continue_with_the_next_sample():
    player, backend, clock = make_player()
    play(player, clock, [(1.5, Command.TOGGLE), (3.0, Command.TOGGLE), (5.25, Command.TOGGLE),
                         (5.5, Command.TOGGLE)])
    assert len(backend.streams) == 3
    assert np.array_equal(backend.heard(), player.track)
    assert backend.streams[1].offset == int(1.5 * RATE)


def test_updates_report_paused_while_paused():
    player, backend, clock = make_player()
    seen = []
    player.run(keys=ScriptedKeys(clock, [(1.0, Command.TOGGLE), (2.0, Command.TOGGLE)]),
               on_update=lambda p: seen.append((round(clock.now, 2), p.paused, p.position())))
    paused = [(t, pos) for t, is_paused, pos in seen if is_paused]
    assert paused and all(1.0 <= t < 2.0 for t, _ in paused)
    assert {pos for _, pos in paused} == {RATE}


def test_next_starts_the_next_chapter_at_its_first_sample():
    player, backend, clock = make_player()
    play(player, clock, [(0.5, Command.NEXT)])
    first, second = backend.streams
    assert second.offset == 4 * S
    assert np.array_equal(backend.heard(), np.concatenate([player.track[:S // 2], player.track[4 * S:]]))


def test_next_in_the_last_chapter_ends_the_routine():
    player, backend, clock = make_player()
    outcome = play(player, clock, [(9.0, Command.NEXT)])
    assert outcome.how == "finished"
    assert len(backend.heard()) == 9 * S


def test_back_restarts_the_chapter_and_again_goes_to_the_one_before():
    player, backend, clock = make_player()
    play(player, clock, [(7.0, Command.BACK), (7.5, Command.BACK), (8.0, Command.QUIT)])
    assert [s.offset for s in backend.streams] == [0, 4 * S, 0]


def test_back_in_the_first_chapter_restarts_it():
    player, backend, clock = make_player()
    play(player, clock, [(0.5, Command.BACK), (1.0, Command.QUIT)])
    assert [s.offset for s in backend.streams] == [0, 0]


def test_skips_while_paused_move_the_position_and_stay_paused():
    player, backend, clock = make_player()
    play(player, clock, [(1.0, Command.TOGGLE), (1.5, Command.NEXT), (2.0, Command.NEXT), (3.0, Command.TOGGLE)])
    assert [s.offset for s in backend.streams] == [0, 8 * S]


def test_quit_stops_and_reports_where():
    player, backend, clock = make_player()
    outcome = play(player, clock, [(2.0, Command.QUIT)])
    assert outcome.how == "quit" and outcome.position == 2 * S
    assert backend.streams[0].cut == 2 * S


def test_start_at_a_chapter():
    player, backend, clock = make_player()
    play(player, clock, start_at=player.starts[2])
    assert np.array_equal(backend.heard(), player.track[8 * S:])


def test_ctrl_c_silences_the_device_before_it_propagates():
    player, backend, clock = make_player()

    class Interrupting:
        def read(self, timeout):
            clock.now += 1.0
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        player.run(keys=Interrupting())
    assert backend.streams[0].cut == S


# ---- --from ----------------------------------------------------------------------


def test_find_chapter_by_number_title_or_prefix():
    timeline = make_timeline([1, 1, 1])
    timeline = Timeline("T", timeline.duration_ms, (
        Chapter("Set up", 0, 1000), Chapter("Stretch: left", 1000, 2000), Chapter("Stretch: right", 2000, 3000)),
        timeline.events)
    assert find_chapter(timeline, "1") == 0
    assert find_chapter(timeline, "3") == 2
    assert find_chapter(timeline, "stretch: RIGHT") == 2
    assert find_chapter(timeline, "stretch") == 1  # the first of several
    assert find_chapter(timeline, " set") == 0
    for bad in ("0", "4", "cool down", ""):
        with pytest.raises(UsageError) as info:
            find_chapter(timeline, bad)
        assert info.value.exit_code == 2
        assert "1 Set up, 2 Stretch: left, 3 Stretch: right" in info.value.hint


# ---- keys ------------------------------------------------------------------------


def test_keys_decode_letters_and_arrows():
    d = KeyDecoder()
    assert d.feed(b" nNpPqQx") == [Command.TOGGLE, Command.NEXT, Command.NEXT, Command.BACK, Command.BACK,
                                   Command.QUIT, Command.QUIT]
    assert d.feed(b"\x1b[C\x1b[D\x1bOC\x1bOD") == [Command.NEXT, Command.BACK, Command.NEXT, Command.BACK]


def test_an_arrow_split_across_reads_is_one_key():
    d = KeyDecoder()
    assert d.feed(b"\x1b") == []
    assert d.feed(b"[") == []
    assert d.feed(b"C ") == [Command.NEXT, Command.TOGGLE]


def test_other_escape_sequences_are_not_keys():
    d = KeyDecoder()
    # Up and down arrows, Ctrl-right, F5: none of their letters count (the "P" of F1 is not "back").
    assert d.feed(b"\x1b[A\x1b[B\x1b[1;5C\x1b[15~\x1bOP") == []
    assert d.feed(b"\x1bq") == [Command.QUIT]  # Alt-q reads as q
    assert d.feed(b"\x1b") == [] and d.flush() == [] and d.feed(b"n") == [Command.NEXT]


def test_terminal_keys_read_a_descriptor_and_stop_at_its_end():
    import os

    from voiceflex.player.keys import TerminalKeys

    r, w = os.pipe()
    keys = TerminalKeys(r)
    os.write(w, b" q\x1b[")
    assert keys.read(1.0) == [Command.TOGGLE, Command.QUIT]
    os.write(w, b"D")
    assert keys.read(1.0) == [Command.BACK]
    assert keys.read(0.01) == []  # nothing typed
    os.close(w)
    assert keys.read(1.0) == [] and keys.read(0.01) == []  # the end: no spinning on it
    os.close(r)


def test_terminal_keys_set_cbreak_and_restore_the_terminal():
    import os
    import termios

    from voiceflex.player import terminal_keys

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(KeyboardInterrupt):
            with terminal_keys(slave) as keys:
                mode = termios.tcgetattr(slave)
                assert not mode[3] & (termios.ICANON | termios.ECHO)
                assert mode[3] & termios.ISIG  # Ctrl-C still interrupts
                os.write(master, b"n")
                assert keys.read(1.0) == [Command.NEXT]
                raise KeyboardInterrupt
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


# ---- the display -------------------------------------------------------------------


def test_status_at_a_position():
    model = StatusModel(make_timeline([4, 4, 4]))
    s = model.at(int(5.2 * RATE))
    assert (s.chapter, s.chapters, s.chapter_title) == (1, 3, "Part 2")
    assert s.chapter_start_ms == 4000 and s.chapter_left_ms == 2800
    assert s.said == "Cue 2b" and s.next_text == "Cue 3a" and s.next_in_ms == 2800
    assert s.next_chapter_title == "Part 3"
    assert s.fraction == pytest.approx(5.2 / 12)
    start = model.at(0)
    assert start.said == "Cue 1a" and start.next_text == "Cue 1b" and start.next_in_ms == 1000
    end = model.at(12 * RATE, state="finished")
    assert end.chapter == 2 and end.chapter_left_ms == 0 and end.next_text is None and end.next_chapter_title is None
    assert chapter_line(model.at(int(9.5 * RATE))) == "0:08 Part 3"


def test_the_rich_view_shows_what_matters():
    from rich.console import Console

    model = StatusModel(make_timeline([4, 4, 70]))
    console = Console(width=100, record=True, file=open("/dev/null", "w"))
    console.print(rich_view(model.at(int(5.2 * RATE), state="paused"), keys=True))
    text = console.export_text()
    for expected in ("Test", "paused", "chapter 2 of 3", "Part 2", "CHAPTER 0:03 left", "Cue 2b", "Cue 3a",
                     "in 0:03", "Part 3", "track 0:05 / 1:18", "space"):
        assert expected in text, (expected, text)


# ---- the simpleaudio backend, against a simulated device ---------------------------


class SimulatedDevice:
    """simpleaudio's behaviour on a real-time device, on a fake clock.

    Like simpleaudio's thread, it copies from the caller's buffer when it
    writes, `chunk` frames a write, keeping up to `ring` frames ahead of what
    has been played; a stop is noticed after the write in flight, then the
    device drains what it was given.
    """

    def __init__(self, clock: Clock, ring: int, chunk: int):
        self.clock, self.ring, self.chunk = clock, ring, chunk
        self.objects: list[SimulatedPlay] = []

    def play_buffer(self, data, channels, width, rate):
        assert (channels, width, rate) == (1, 2, RATE)
        self.objects.append(SimulatedPlay(self, data))
        return self.objects[-1]


class SimulatedPlay:
    def __init__(self, device: SimulatedDevice, data: np.ndarray):
        self.device, self.data = device, data
        self.t0 = device.clock()
        self.taken = np.zeros(0, np.int16)  # what the device read from the buffer, as it was when read
        self.end = len(data)  # where the thread stops writing

    def _played(self) -> int:
        return int((self.device.clock() - self.t0) * RATE)

    def _advance(self) -> None:
        target = min(self._played() + self.device.ring, self.end)
        if target > len(self.taken):
            self.taken = np.concatenate([self.taken, self.data[len(self.taken):target].copy()])

    def stop(self) -> None:
        self._advance()
        # The write in flight completes (up to the next chunk boundary); then the thread sees the flag.
        boundary = -(-len(self.taken) // self.device.chunk) * self.device.chunk
        self.end = min(self.end, max(boundary, len(self.taken)))

    def is_playing(self) -> bool:
        self._advance()
        return self._played() < self.end


@pytest.mark.parametrize("ring, chunk, after", [(2205, 2205, 3.3), (4410, 1024, 0.2), (6615, 6615, 17.1)])
def test_simpleaudio_halts_exactly_by_silencing_ahead(ring, chunk, after):
    clock = Clock()
    device = SimulatedDevice(clock, ring=ring, chunk=chunk)
    backend = SimpleaudioOutput(module=device, clock=clock, sleep=clock.sleep)
    track = (np.arange(30 * RATE) % 30000 + 1).astype(np.int16)
    original = track.copy()
    stream = backend.play(track)
    clock.now += after
    assert not stream.done()
    cut = stream.halt(exact=True)
    heard = device.objects[0].taken
    assert abs(cut - after * RATE) < RATE  # paused about when asked
    assert np.array_equal(heard[:cut], original[:cut])  # everything before the cut, once
    assert len(heard) > cut and not heard[cut:].any()  # after it, silence only
    assert np.array_equal(track, original)  # the track is whole again
    assert not device.objects[0].is_playing()


def test_simpleaudio_quick_halt_stops_at_once_in_silence():
    clock = Clock()
    device = SimulatedDevice(clock, ring=2205, chunk=2205)
    backend = SimpleaudioOutput(module=device, clock=clock, sleep=clock.sleep)
    track = (np.arange(10 * RATE) % 30000 + 1).astype(np.int16)
    stream = backend.play(track)
    clock.now += 2.0
    stream.halt(exact=False)
    heard = device.objects[0].taken
    assert clock.now < 2.3  # stopped at once
    assert np.array_equal(heard[:2 * RATE], track[:2 * RATE])
    assert not heard[2 * RATE + 2205:].any()  # past what the device held, only silence


def test_simpleaudio_stream_that_ended_reports_the_whole_buffer():
    clock = Clock()
    device = SimulatedDevice(clock, ring=2205, chunk=2205)
    stream = SimpleaudioOutput(module=device, clock=clock, sleep=clock.sleep).play(np.ones(RATE, np.int16))
    clock.now += 1.5
    assert stream.done() and stream.played() == RATE and stream.halt(exact=True) == RATE


def test_simpleaudio_device_errors_become_device_errors():
    class SimpleaudioError(Exception):
        pass

    class NoDevice:
        def play_buffer(self, *args):
            raise SimpleaudioError("Error opening PCM device. -- CODE: -2 -- MSG: No such file or directory")

    backend = SimpleaudioOutput(module=NoDevice())
    with pytest.raises(DeviceError) as info:
        backend.play(np.zeros(10, np.int16))
    assert str(info.value) == "no sound output: the default ALSA device cannot be opened (No such file or directory)"
    assert info.value.exit_code == 1


def test_simpleaudio_missing_is_a_device_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "simpleaudio", None)
    with pytest.raises(DeviceError, match="simpleaudio"):
        SimpleaudioOutput()


# ---- the samples and the command ---------------------------------------------------

ROUTINE = """\
title: Two parts
steps:
  - name: First
    say: One.
  - hold: 2s
  - name: Second
    say: Two.
  - pause: 1s
"""


def test_render_track_is_the_rendered_samples(tmp_path, fake_engine):
    path = tmp_path / "r.yaml"
    path.write_text(ROUTINE)
    plan = pipeline.plan(str(path), engine=fake_engine)
    track = render_track(plan)
    assert track.dtype == np.int16
    assert np.array_equal(track, np.concatenate(list(render_plan(plan))))


def test_track_render_fills_the_buffer_in_order_while_it_is_read(tmp_path, fake_engine):
    from voiceflex.player import TrackRender

    path = tmp_path / "r.yaml"
    path.write_text(ROUTINE)
    plan = pipeline.plan(str(path), engine=fake_engine)
    render = TrackRender(plan)
    try:
        render.ready(1)  # the first samples are final: a player may start on them
        assert render.filled >= 1
        render.ready(render.total)
        assert np.array_equal(render.samples, np.concatenate(list(render_plan(plan))))
    finally:
        render.close()


def test_track_render_hands_its_failure_to_whoever_waits(tmp_path, fake_engine, monkeypatch):
    from voiceflex.player import TrackRender

    path = tmp_path / "r.yaml"
    path.write_text(ROUTINE)
    plan = pipeline.plan(str(path), engine=fake_engine)

    def broken(plan, **kw):
        yield np.zeros(10, np.int16)
        raise RuntimeError("mixer broke")

    monkeypatch.setattr("voiceflex.planned.render", broken)
    render = TrackRender(plan)
    with pytest.raises(RuntimeError, match="mixer broke"):
        render.ready(render.total)


def test_player_hands_the_backend_readiness_in_track_samples():
    player, backend, clock = make_player((4, 4, 4))
    asked = []
    player._ready = asked.append
    player.start(0)
    assert asked[-1] == player.total  # the fake backend asks for all it will play
    player.seek(6 * S)
    assert asked[-1] == player.total  # counted from the track's start, not the stream's
    asked.clear()
    player.stop()  # a quit waits for nothing
    assert asked == []


def test_play_command_with_a_fake_device(tmp_path, fake_engine, monkeypatch, capsys):
    from voiceflex import cli, player

    path = tmp_path / "r.yaml"
    path.write_text(ROUTINE)
    monkeypatch.setattr("voiceflex.voice.synthesis.get_engine", lambda settings: fake_engine)
    clock = Clock()
    backends = []

    def fake_output():
        backends.append(FakeOutput(clock))
        return backends[-1]

    monkeypatch.setattr("voiceflex.player.playback.default_output", fake_output)
    monkeypatch.setattr("voiceflex.player.session.NoKeys", lambda: NoKeys(sleep=clock.sleep))
    assert cli.main(["play", str(path), "--from", "sec"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [out.splitlines()[0]] and out.endswith(" Second\n")
    (stream,) = backends[0].streams
    assert stream.played() == len(stream.samples)

    assert cli.main(["play", str(path), "--from", "7"]) == 2
    assert '--from "7" is not a chapter' in capsys.readouterr().err
