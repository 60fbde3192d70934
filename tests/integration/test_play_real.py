"""`voiceflex play` for real: each sound backend into an ALSA capture, keys through a pseudo-terminal, the real voice."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from helpers.alsa import Capture, make_capture, make_no_device
from voiceflex import pipeline
from voiceflex.audio.rate import ms_to_samples
from voiceflex.player import render_track

pytestmark = pytest.mark.integration

# Three short chapters, about 10 s in all: long enough to press keys in (the
# first sentence lasts ~5 s), short enough to play in real time.
ROUTINE = """\
title: Player test
steps:
  - name: Warm up
    say: Chapter one. Kneel down slowly on a soft mat, breathe in deeply, and keep your back long,
      your chest open and your shoulders relaxed.
  - pause: 0.5s
  - name: Hold
    say: Chapter two.
  - hold: 1.5s
  - name: Finish
    say: The end.
  - pause: 0.5s
"""
VOICEFLEX = [sys.executable, "-m", "voiceflex"]


@pytest.fixture(autouse=True, params=["sounddevice", "simpleaudio"])
def audio(request, monkeypatch) -> str:
    """Every test runs with each backend (the players inherit the environment)."""
    monkeypatch.setenv("VOICEFLEX_AUDIO", request.param)
    return request.param


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    """The default output captured as fast as it is written."""
    return make_capture(tmp_path / "home", "instant")


@pytest.fixture
def realtime_capture(tmp_path: Path) -> Capture:
    """The default output taken at the real rate; a stream ends only once its last sample was taken."""
    return make_capture(tmp_path / "home", "realtime")


@pytest.fixture
def device_capture(tmp_path: Path):
    """The default output as a sound card would take it: in real time, with a ~0.2 s buffer."""
    capture = make_capture(tmp_path / "home", "device")
    yield capture
    capture.close()


@pytest.fixture
def routine(tmp_path: Path):
    """The routine's path, and its samples as export renders them (this fills the voice cache the player reads)."""
    path = tmp_path / "player-test.yaml"
    path.write_text(ROUTINE)
    plan = pipeline.plan(str(path))
    return path, plan, render_track(plan)


def silence_inserted_at(played: np.ndarray, track: np.ndarray) -> int | None:
    """k such that `played` is track[:k], then silence, then track[k:]; None if there is no such k."""
    extra = len(played) - len(track)
    if extra < 0:
        return None
    differs = np.flatnonzero(played[:len(track)] != track)
    prefix = differs[0] if len(differs) else len(track)  # played[:prefix] == track[:prefix]
    differs = np.flatnonzero(played[extra:] != track)
    suffix_from = differs[-1] + 1 if len(differs) else 0  # played[extra + i] == track[i] for i >= suffix_from
    nonzero = np.concatenate([[0], np.cumsum(played != 0)])
    for k in range(suffix_from, prefix + 1):
        if nonzero[k + extra] == nonzero[k]:
            return k
    return None


def wait_for_first_sound(capture, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while capture.first_sound() is None:
        assert proc.poll() is None, "the player ended before playing anything"
        assert time.monotonic() < deadline, "no sound came"
        time.sleep(0.01)


class Terminal:
    """A command run on a pseudo-terminal (stdin and stdout), as from an interactive shell."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.mode_before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(args, stdin=self.slave, stdout=self.slave, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True, preexec_fn=_take_terminal)
        self.output = bytearray()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        # Keep reading what the display writes, or the child would block on a full terminal.
        while not self._done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    return

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        _, stderr = self.proc.communicate(timeout=timeout)
        time.sleep(0.1)
        self._done.set()
        self._reader.join()
        return self.proc.returncode, stderr.decode(errors="replace")

    def mode(self) -> list:
        return termios.tcgetattr(self.slave)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._done.set()
        os.close(self.master)
        os.close(self.slave)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def start(*args: str, env: dict[str, str]) -> Terminal:
        opened.append(Terminal([*VOICEFLEX, *args], env))
        return opened[-1]

    yield start
    for t in opened:
        t.close()


# ---- the samples -----------------------------------------------------------------


def test_play_sends_exactly_the_rendered_samples(routine, capture):
    path, plan, track = routine
    result = subprocess.run([*VOICEFLEX, "play", str(path)], env=capture.env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    played = capture.samples()
    assert len(played) == len(track)
    assert np.array_equal(played, track)
    assert [kind for kind, _, _ in capture.events()] == ["open", "first", "close"]
    # Not a terminal: the first chapter's line (the capture takes the rest too fast to see them start).
    assert result.stdout.splitlines()[0] == "0:00 Warm up"


def test_play_from_a_chapter_title_starts_at_its_first_sample(routine, capture):
    path, plan, track = routine
    result = subprocess.run([*VOICEFLEX, "play", str(path), "--from", "HOLD"], env=capture.env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    start = ms_to_samples(plan.timeline.chapters[1].start_ms)
    assert np.array_equal(capture.samples(), track[start:])
    assert result.stdout.splitlines()[0].endswith(" Hold")


def test_play_returns_only_after_the_last_sample_was_played(routine, realtime_capture):
    path, plan, track = routine
    capture = realtime_capture
    start = ms_to_samples(plan.timeline.chapters[2].start_ms)
    began = time.time()
    result = subprocess.run([*VOICEFLEX, "play", str(path), "--from", "3"], env=capture.env(),
                            capture_output=True, text=True, timeout=120)
    returned = time.time()
    assert result.returncode == 0, result.stderr
    # Read right after the command returned: every sample had reached the
    # device (which took real time) before it did.
    played = capture.samples()
    assert np.array_equal(played, track[start:])
    kinds = [kind for kind, _, _ in capture.events()]
    assert kinds == ["open", "first", "close"]
    first, closed = capture.first_sound(), capture.events()[-1][1]
    assert began < first <= closed <= returned
    assert closed - first >= (len(track) - start) / 22050 - 0.1


def without_device_silence(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`samples` less the silence a device adds before the first and after the last sample, aligned on `reference`."""
    first = np.flatnonzero(samples)[0] - np.flatnonzero(reference)[0]
    return samples[first:first + len(reference)] if first >= 0 else samples


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_an_unpaced_device_plays_a_built_in_routine_as_exported(capture, tmp_path, delay):
    # The capture takes samples faster than the renderer makes them; with a
    # delay per chunk the renderer is starved as on a loaded machine.  The
    # device must wait for it, never play what is not rendered yet.
    exported = subprocess.run([*VOICEFLEX, "export", "hip-flexor-stretch", "--format", "wav",
                               "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    with wave.open(exported.stdout.strip()) as w:
        reference = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    slow = Path(__file__).parent.parent / "helpers" / "slow_render.py"
    result = subprocess.run([sys.executable, str(slow), str(delay), "play", "hip-flexor-stretch"],
                            env=capture.env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    capture.settle()
    played = capture.samples()
    assert len(played) - len(reference) < 4096  # the device's own silence only
    assert np.array_equal(without_device_silence(played, reference), reference)


# ---- keys ------------------------------------------------------------------------


def test_pause_and_resume_lose_and_repeat_nothing(routine, device_capture, terminal):
    path, plan, track = routine
    capture = device_capture
    term = terminal("play", str(path), env=capture.env())
    wait_for_first_sound(capture, term.proc)
    time.sleep(1.0)  # in the middle of the first sentence
    term.press(b" ")
    time.sleep(0.8)
    term.press(b" ")
    code, stderr = term.finish()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    capture.settle()

    # Every sample was played once, none lost, none twice; only silence
    # came in between (what the device played while it stopped).
    played = capture.samples()
    k = silence_inserted_at(played, track)
    assert k is not None
    if len(played) == len(track):
        # sounddevice: the device played out what was written, then waited
        # for the resume: the first stream ends at the cut.
        streams = [size // 2 for kind, _, size in capture.events() if kind == "close"]
        assert len(streams) == 2
        k = streams[0]
    # It paused about where the key was pressed (up to half a second later,
    # see the backends), while the voice spoke: a cut in silence would
    # prove less.
    assert 1.0 * 22050 < k < 2.5 * 22050
    assert np.abs(track[k - 2205:k + 2205]).max() > 1000
    assert b"paused" in term.output


def test_next_lands_on_the_next_chapters_first_sample(routine, device_capture, terminal):
    path, plan, track = routine
    capture = device_capture
    second_chapter = ms_to_samples(plan.timeline.chapters[1].start_ms)
    term = terminal("play", str(path), env=capture.env())
    wait_for_first_sound(capture, term.proc)
    time.sleep(0.5)
    term.press(b"\x1b[C")  # right arrow
    code, stderr = term.finish()
    assert code == 0, stderr
    capture.settle()

    played = capture.samples()
    rest = len(track) - second_chapter
    # It ends with the whole second chapter on, from its first sample ...
    assert np.array_equal(played[-rest:], track[second_chapter:])
    # ... after the start of the first chapter and then silence only.
    before = played[:-rest]
    heard = len(before) - np.argmax(before[::-1] != 0) if before.any() else 0
    assert 0.3 * 22050 < heard < second_chapter
    assert np.array_equal(before[:heard], track[:heard])
    assert b"Hold" in term.output


def test_ctrl_c_stops_with_the_terminal_restored(routine, device_capture, terminal):
    path, plan, track = routine
    capture = device_capture
    term = terminal("play", str(path), env=capture.env())
    wait_for_first_sound(capture, term.proc)
    time.sleep(0.3)
    term.press(b"\x03")  # Ctrl-C
    code, stderr = term.finish()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == "voiceflex: interrupted"
    capture.settle()
    assert len(capture.samples()) < len(track) // 2  # it stopped the sound
    mode = term.mode()
    assert mode[3] & termios.ECHO and mode[3] & termios.ICANON
    assert mode == term.mode_before


def test_q_quits(routine, device_capture, terminal):
    path, plan, track = routine
    capture = device_capture
    term = terminal("play", str(path), env=capture.env())
    wait_for_first_sound(capture, term.proc)
    term.press(b"q")
    code, stderr = term.finish()
    assert code == 0, stderr
    assert stderr == ""
    capture.settle()
    assert len(capture.samples()) < len(track) // 2
    assert term.mode() == term.mode_before
    assert b"stopped" in term.output


# ---- no sound output -------------------------------------------------------------


def test_no_sound_device_is_one_line_naming_export(routine, tmp_path):
    path, plan, track = routine
    env = {k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_PATH"}
    env["HOME"] = str(make_no_device(tmp_path / "home"))
    result = subprocess.run([*VOICEFLEX, "play", str(path)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "ALSA lib" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("voiceflex: no sound output")
    assert f"voiceflex export {path}" in lines[0]
