"""The live screen for real: `voiceflex play` on a pseudo-terminal and under tmux, into a real-time capture.

What is on screen is read at moments measured from the first sound or a
key press and compared with where the routine must be then.  The player
reacts within a tick and the device lags by its buffer, so a countdown may
read one second either way; the defect this guards against (a next-chapter
time that forgot a skip) was off by minutes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.alsa import make_capture
from voiceflex import pipeline

pytestmark = pytest.mark.integration

ROUTINE = """\
title: Screen test
steps:
  - name: Warm up
    say: Get ready.
  - name: Hold
    hold: 8s
  - name: Rest
    rest: 8s
  - name: Finish
    say: Done.
"""
VOICEFLEX = [sys.executable, "-m", "voiceflex"]
LINE = re.compile(r"(?:(?:PAUSED|DONE|STOPPED) \| )?(?P<kind>[A-Z ]+?) (?:in )?(?P<left>\d+:\d\d)(?: left)?[^|]* \| (?P<chapter>[^|]+) \| "
                  r"(?:next (?P<next>[^|]+?)|end) in (?P<next_in>\d+:\d\d)")


def seconds(text: str) -> int:
    minutes, secs = text.split(":")
    return int(minutes) * 60 + int(secs)


@pytest.fixture
def routine(tmp_path: Path):
    path = tmp_path / "screen.yaml"
    path.write_text(ROUTINE)
    return path, pipeline.plan(str(path)).timeline  # also fills the voice cache the player reads


@pytest.fixture
def device(tmp_path: Path):
    capture = make_capture(tmp_path / "home", "device")
    yield capture
    capture.close()


def wait_for_sound(capture, alive, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while capture.first_sound() is None:
        assert alive(), "the player ended before playing anything"
        assert time.monotonic() < deadline, "no sound came"
        time.sleep(0.01)
    return capture.first_sound()


def close_to(shown: int, expected: float) -> bool:
    return expected - 1.5 <= shown <= expected + 1.5


def lines_of(output: bytes) -> list[str]:
    """The status lines a dumb terminal got: each rewrites the last after a carriage return."""
    return [part.strip() for part in output.decode().replace("\n", "\r").split("\r") if part.strip()]


def test_a_dumb_terminal_gets_the_status_line_alone(routine, device):
    path, timeline = routine
    hold, rest_chapter = timeline.spans[0], timeline.chapters[2]
    master, slave = os.openpty()
    proc = subprocess.Popen([*VOICEFLEX, "play", str(path)], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, env=device.env(TERM="dumb"))
    os.close(slave)
    output = bytearray()
    try:
        first = wait_for_sound(device, lambda: proc.poll() is None)
        into = 3.0  # seconds into the hold
        while time.time() < first + hold.start_ms / 1000 + into:
            output += _read(master, 0.05)
        then = lines_of(bytes(output))[-1]
        proc.wait(timeout=60)
        output += _read(master, 0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"\x1b[" not in output  # no cursor movement, no colour: a dumb terminal
    shown = LINE.fullmatch(then)
    assert shown is not None, then
    assert shown.group("kind") == "HOLD" and shown.group("chapter") == "Hold" and shown.group("next") == "Rest"
    assert close_to(seconds(shown.group("left")), (hold.end_ms - hold.start_ms) / 1000 - into)
    assert close_to(seconds(shown.group("next_in")), (rest_chapter.start_ms - hold.start_ms) / 1000 - into)
    lines = lines_of(bytes(output))
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert any(line.startswith("REST ") for line in lines)
    assert lines[-1].startswith("DONE | ")


def _read(fd: int, timeout: float) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


class Tmux:
    """A private tmux server running one command in a 100 x 30 window."""

    def __init__(self, folder: Path, command: list[str], env: dict[str, str], width: int = 100):
        self.socket = str(folder / "tmux.sock")
        # The server's environment may carry a COLUMNS from elsewhere, which
        # rich would believe over the window: the window's size must decide.
        inner = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                          *map(shlex.quote, command)])
        self.run("new-session", "-d", "-x", str(width), "-y", "30", "-s", "t", inner)
        self.run("set-option", "-t", "t", "remain-on-exit", "on")

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def status(self) -> re.Match[str] | None:
        for line in self.screen().splitlines():
            match = LINE.search(line)
            if match:
                return match
        return None

    def wait_for(self, test, timeout: float = 30) -> float:
        """time.time() when the status line first passes `test`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and test(status):
                return time.time()
            time.sleep(0.05)
        raise AssertionError(f"the screen never changed as expected:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path: Path):
    assert shutil.which("tmux"), "tmux is missing: scripts/setup installs it (apt install tmux)"
    opened: list[Tmux] = []

    def start(command: list[str], env: dict[str, str], width: int = 100) -> Tmux:
        opened.append(Tmux(tmp_path, command, env, width))
        return opened[-1]

    yield start
    for t in opened:
        t.close()


@pytest.mark.parametrize("audio", ["sounddevice", "simpleaudio"])
def test_under_tmux_the_phase_and_next_chapter_are_right_after_from_n_and_p(routine, device, tmux, audio):
    # The position the screen counts from is each backend's own estimate.
    path, timeline = routine
    hold, rest, finish = timeline.chapters[1], timeline.chapters[2], timeline.chapters[3]
    env = {k: v for k, v in device.env().items() if k in ("HOME", "PATH", "PYTHONPATH", "XDG_CACHE_HOME",
                                                           "XDG_CONFIG_HOME")}
    env["VOICEFLEX_AUDIO"] = audio
    term = tmux([*VOICEFLEX, "play", str(path), "--from", "2"], env)
    first = wait_for_sound(device, lambda: True)
    time.sleep(2.0)
    elapsed = time.time() - first
    status = term.status()
    assert status is not None, term.screen()
    assert status.group("kind") == "HOLD" and status.group("chapter") == "Hold"
    assert status.group("next") == "Rest"
    assert close_to(seconds(status.group("next_in")), (hold.end_ms - hold.start_ms) / 1000 - elapsed)
    assert "██" in term.screen()  # the big digits

    term.keys("n")  # to the rest
    pressed = term.wait_for(lambda m: m.group("chapter") == "Rest")  # the skip took effect (the machine may be busy)
    time.sleep(2.0)
    status = term.status()
    after = time.time() - pressed
    assert status.group("kind") == "REST" and status.group("chapter") == "Rest", term.screen()
    assert status.group("next") == "Finish"
    assert close_to(seconds(status.group("next_in")), (finish.start_ms - rest.start_ms) / 1000 - after)
    assert close_to(seconds(status.group("left")), (rest.end_ms - rest.start_ms - 320) / 1000 - after)

    term.keys("p")  # more than 2 s into the rest: back to its start
    pressed = term.wait_for(lambda m: seconds(m.group("next_in")) >= seconds(status.group("next_in")) + 1)
    time.sleep(1.0)
    status = term.status()
    after = time.time() - pressed
    assert status.group("chapter") == "Rest", term.screen()
    assert close_to(seconds(status.group("next_in")), (finish.start_ms - rest.start_ms) / 1000 - after)
    term.keys("q")


def test_under_tmux_a_narrow_window_shows_the_status_line_alone(routine, device, tmux):
    path, timeline = routine
    env = {k: v for k, v in device.env().items() if k in ("HOME", "PATH", "PYTHONPATH", "XDG_CACHE_HOME",
                                                           "XDG_CONFIG_HOME", "VOICEFLEX_AUDIO")}
    term = tmux([*VOICEFLEX, "play", str(path), "--from", "Hold"], env, width=50)
    wait_for_sound(device, lambda: True)
    time.sleep(1.0)
    screen = term.screen()
    assert "██" not in screen, screen
    assert re.search(r"HOLD 0:0\d left \| Hold \| next Rest", screen), screen
    term.keys("q")
