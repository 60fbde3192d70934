"""ALSA capture for tests and benchmarks: a HOME whose default sound output writes what is played to a file.

`make_capture(folder, mode)` writes `folder/.asoundrc` with a default PCM of
`type file` over the null device.  Run a player with HOME=folder
(`capture.env()`) and everything it plays lands in `capture.raw`, stream
after stream, exactly as sent to the device.  Modes:

- "instant": each stream is piped (`file "|COMMAND"`) to a reader that takes
  it as fast as it comes, so a routine "plays" in milliseconds.  ALSA waits
  for the reader when it closes the PCM, so a stream that has ended is
  complete in the file.
- "realtime": the same, but the reader takes the samples at the real byte
  rate (22050 Hz, 16-bit mono).  Playing takes as long as the audio, and a
  stream ends only after its last sample was taken in real time.  The
  player runs ~1 s ahead of what was taken: ALSA fills the pipe's 64 KiB
  before the reader has started and could make it smaller.
- "device": like a sound card.  The PCM writes into a FIFO whose reader was
  started beforehand with a one-page (4 KiB) pipe and takes the samples at
  the real rate, so the player can be only ~0.1-0.2 s ahead of what was
  "heard", as with a card's buffer; a pause or skip then lands at a real
  position.  A stream's last ~46 ms may still be in the FIFO when the
  player's stream has ended.  Call `capture.close()` (the fixtures do).

`capture.log` gets one line per event, with time.time() stamps a benchmark
can subtract from its own: "open T" (a stream started; in "device" mode, at
its first samples), "first T" when its first samples arrived, "close T BYTES"
when it ended.

`make_no_device(folder)` writes an .asoundrc whose default PCM does not
exist, like a machine without a sound card.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 22050
BYTES_PER_SECOND = RATE * 2

# The reader for "instant" and "realtime": one process per stream, fed by ALSA through a pipe.
PIPE_READER = r'''
import fcntl, os, signal, sys, time
opened = time.time()
# A device does not hear the Ctrl-C typed at the player's terminal.
signal.signal(signal.SIGINT, signal.SIG_IGN)
raw, log, realtime = sys.argv[1], sys.argv[2], sys.argv[3] == "realtime"
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
out = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fcntl.flock(out, fcntl.LOCK_EX)  # streams land one after the other, never interleaved
note(f"open {opened}")
start = None
total = 0
while True:
    data = os.read(0, 4096)
    if not data:
        break
    if start is None:
        start = time.monotonic()
        note(f"first {time.time()}")
    os.write(out, data)
    total += len(data)
    if realtime:
        ahead = start + total / RATE_BYTES - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
note(f"close {time.time()} {total}")
'''.replace("RATE_BYTES", str(BYTES_PER_SECOND))

# The reader for "device": one long-lived process on a FIFO, every stream in turn.
FIFO_READER = r'''
import fcntl, os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
fifo, raw, log = sys.argv[1], sys.argv[2], sys.argv[3]
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ, before any writer: the card's buffer
out = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
poller = select.poll()
poller.register(fd, select.POLLIN)
note("ready 0")
start, total = None, 0
while True:
    events = poller.poll(100)
    data = os.read(fd, 4096) if events else b""
    if data:
        if start is None:
            start, total = time.monotonic(), 0
            now = time.time()
            note(f"open {now}")
            note(f"first {now}")
        os.write(out, data)
        total += len(data)
        ahead = start + total / RATE_BYTES - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    elif events:
        # No writer left (POLLHUP): the stream ended.  Linux keeps reporting
        # it until the next writer opens the FIFO.
        if start is not None:
            note(f"close {time.time()} {total}")
            start = None
        time.sleep(0.001)
'''.replace("RATE_BYTES", str(BYTES_PER_SECOND))


@dataclass
class Capture:
    home: Path
    raw: Path
    log: Path
    mode: str
    reader: subprocess.Popen | None = field(default=None, repr=False)

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with HOME pointing at the capture (and ALSA_CONFIG_PATH unset, which would override it)."""
        env = {k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_PATH"}
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def samples(self) -> np.ndarray:
        """Everything played so far, as int16."""
        if not self.raw.exists():
            return np.zeros(0, np.int16)
        return np.fromfile(self.raw, dtype="<i2")

    def events(self) -> list[tuple[str, float, int]]:
        """(kind, time, bytes) per log line: kind is open, first or close; bytes only for close."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            kind, stamp, *rest = line.split()
            if kind != "ready":
                rows.append((kind, float(stamp), int(rest[0]) if rest else 0))
        return rows

    def first_sound(self) -> float | None:
        """time.time() when the first samples reached the device, if any did."""
        return next((t for kind, t, _ in self.events() if kind == "first"), None)

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every stream that opened has closed (in "device" mode the reader lags by ~46 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kinds = [kind for kind, _, _ in self.events()]
            if kinds.count("open") == kinds.count("close"):
                return
            time.sleep(0.01)
        raise TimeoutError(f"the capture reader did not finish: {self.events()}")

    def close(self) -> None:
        if self.reader is not None and self.reader.poll() is None:
            self.reader.terminate()
            self.reader.wait()


def make_capture(folder: Path, mode: str = "instant") -> Capture:
    if mode not in ("instant", "realtime", "device"):
        raise ValueError(mode)
    folder.mkdir(parents=True, exist_ok=True)
    raw, log = folder / "played.raw", folder / "played.log"
    if mode == "device":
        fifo = folder / "device.fifo"
        os.mkfifo(fifo)
        reader_path = folder / "fifo_reader.py"
        reader_path.write_text(FIFO_READER)
        target = str(fifo)
        reader = subprocess.Popen([sys.executable, "-S", str(reader_path), str(fifo), str(raw), str(log)],
                                  stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (log.exists() and "ready" in log.read_text()):
            if reader.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the capture reader did not start")
            time.sleep(0.005)
    else:
        reader_path = folder / "pipe_reader.py"
        reader_path.write_text(PIPE_READER)
        target = "|" + " ".join(shlex.quote(str(x)) for x in (sys.executable, "-S", reader_path, raw, log, mode))
        reader = None
    (folder / ".asoundrc").write_text(
        "pcm.!default {\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        f"  file {_alsa_string(target)}\n"
        '  format "raw"\n'
        "}\n"
    )
    return Capture(folder, raw, log, mode, reader)


def make_no_device(folder: Path) -> Path:
    """A HOME whose default sound output names a PCM that does not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".asoundrc").write_text('pcm.!default "voiceflex_test_no_such_device"\n')
    return folder


def _alsa_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def time_to_first_sound(argv: list[str], folder: Path, **env: str) -> float:
    """Seconds from starting `argv` (e.g. voiceflex play ROUTINE) to its first samples reaching the device.

    For scripts/bench: a "device" capture in `folder` (its reader is up
    before the clock starts, so its own start-up is not counted); the player
    is stopped with SIGINT once the first samples came.
    """
    import signal

    capture = make_capture(folder, "device")
    try:
        began = time.time()
        proc = subprocess.Popen(argv, env=capture.env(**env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while capture.first_sound() is None:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} ended before any sound: {proc.stderr.read().decode().strip()}")
            time.sleep(0.001)
        first = capture.first_sound()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        return first - began
    finally:
        capture.close()
