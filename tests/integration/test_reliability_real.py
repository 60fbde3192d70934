"""Faults for real: `voiceflex export` processes interrupted, killed, starved of disk, run four at once.

Every test runs the real command line in child processes, with the real
pyttsx3/espeak-ng voice and the real ffmpeg.  Signals are sent once the
export's temporary file exists (or its speech workers are busy), never after
a sleep.  docs/reliability.md lists which test shows which guarantee.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from voiceflex.audio.rate import RATE
from voiceflex.voice import get_engine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("espeak-ng")),
                       reason="needs ffmpeg and espeak-ng"),
]

VOICEFLEX = [sys.executable, "-m", "voiceflex"]
WAIT = 60.0  # seconds: the most any one step may take before the test gives up on a hang

# ~10 minutes, ~60 distinct cues: long enough to interrupt while it is encoded.
LONG = """\
title: {title}
steps:
  - name: Warm up
    say: Find a comfortable position.
  - name: Rounds
    repeat: 25
    rest: 5s
    steps:
      - say: Round {{round}} of {{rounds}}. Breathe in slowly.
      - hold: 15s
        say: Hold for {{seconds}} seconds.
        halfway: Halfway through round {{round}}.
        countdown: 3
  - name: Finish
    say: Well done.
  - tone: done
"""

# 150 distinct cues: its voice takes long enough to render (about a second) that
# a worker, or the whole export, can be killed while cues are being spoken.
# What every speech worker's command line names (voice/workers.py, _BOOTSTRAP).
WORKER_MAIN = "voiceflex.voice.worker_main"
MANY_CUES = """\
title: Many cues
steps:
  - repeat: 150
    steps:
      - say: Cue number {round}, keep going.
      - pause: 0.5s
"""

# About a minute and a half, ~30 distinct cues.
SHORT = """\
title: {title}
steps:
  - repeat: 8
    steps:
      - say: Round {{round}}, stretch up tall.
      - hold: 6s
        say: Reach {{round}} times.
        halfway: Round {{round}}, halfway.
      - say: Relax after round {{round}}.
"""


def env_for(cache: Path, tmp: Path, **more: str) -> dict[str, str]:
    """The environment of one export: its voice cache and its own temporary folder."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "VOICEFLEX_CACHE_DIR": str(cache), "TMPDIR": str(tmp), **more}


def voiceflex(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*VOICEFLEX, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def start(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    # A session of its own, like a command started from a terminal: a Ctrl-C
    # reaches its whole process group.
    return subprocess.Popen([*VOICEFLEX, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)


def wait_until(condition, process: subprocess.Popen, what: str):
    """Poll `condition` until it holds; fail if `process` ends first or WAIT passes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the export ended (status {process.returncode}) before {what}: {err}")
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"no {what} within {WAIT} s")


def commands_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def wait_gone(text: str) -> None:
    """Wait (up to WAIT) until no process mentions `text`, e.g. an ffmpeg left to finish."""
    deadline = time.monotonic() + WAIT
    while commands_mentioning(text):
        assert time.monotonic() < deadline, f"still running: {commands_mentioning(text)}"
        time.sleep(0.01)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def decoded_ms(path: Path) -> float:
    """Length of `path` as ffmpeg decodes it (encoder delay and padding removed)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(RATE),
                          "-"], capture_output=True, check=True, timeout=120).stdout
    return len(raw) / 2 * 1000 / RATE


def planned_ms(routine: Path, env: dict[str, str]) -> int:
    result = voiceflex("plan", "--json", routine.name, env=env, cwd=routine.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["duration_ms"]


def mp3_title(path: Path) -> str:
    from mutagen.id3 import ID3

    return str(ID3(path)["TIT2"])


@dataclass
class Exported:
    """A routine exported once into `out`: what a later export of it must leave intact."""

    folder: Path
    cache: Path
    previous: bytes


@pytest.fixture(scope="module")
def long_export(tmp_path_factory) -> Exported:
    folder = tmp_path_factory.mktemp("long")
    cache = folder / "cache"
    (folder / "long.yaml").write_text(LONG.format(title="Long routine"))
    result = voiceflex("export", "long.yaml", "-o", "out", env=env_for(cache, folder / "tmp"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return Exported(folder, cache, (folder / "out" / "long.mp3").read_bytes())


def previous_export_in(work: Path, exported: Exported) -> Path:
    """`work` holding the routine changed (a new title) and its previous export: a finished new
    export would differ from the previous one, so a file left intact can be told from a new one."""
    (work / "long.yaml").write_text(LONG.format(title="Long routine, second take"))
    (work / "out").mkdir(parents=True)
    (work / "out" / "long.mp3").write_bytes(exported.previous)
    return work / "out" / "long.mp3"


# ---- Ctrl-C, SIGKILL ---------------------------------------------------------------------


def test_ctrl_c_mid_export_keeps_the_previous_file_and_leaves_nothing(long_export, tmp_path):
    final = previous_export_in(tmp_path, long_export)
    export = start("export", "long.yaml", "-o", "out", env=env_for(long_export.cache, tmp_path / "tmp"),
                   cwd=tmp_path)
    wait_until(lambda: list(final.parent.glob(".long.mp3.*.part")), export, "the temporary file appeared")
    os.killpg(export.pid, signal.SIGINT)  # what Ctrl-C on its terminal sends
    out, err = export.communicate(timeout=WAIT)
    assert export.returncode == 130
    assert err == "voiceflex: interrupted\n"
    assert final.read_bytes() == long_export.previous
    assert listing(final.parent) == ["long.mp3"]  # the temporary file removed at once
    assert commands_mentioning(str(final.parent)) == []  # ffmpeg stopped, not left running
    assert list((tmp_path / "tmp").iterdir()) == []


def test_sigkill_mid_export_keeps_the_previous_file_and_the_next_run_cleans_up(long_export, tmp_path):
    final = previous_export_in(tmp_path, long_export)
    env = env_for(long_export.cache, tmp_path / "tmp")
    export = start("export", "long.yaml", "-o", "out", env=env, cwd=tmp_path)
    parts = wait_until(lambda: list(final.parent.glob(".long.mp3.*.part")), export, "the temporary file appeared")
    export.kill()
    export.wait(timeout=WAIT)
    wait_gone(parts[0].name)  # its ffmpeg, in a session of its own, finishes the file it was given
    assert final.read_bytes() == long_export.previous
    assert (final.parent / parts[0].name).exists()  # nothing could clean up after SIGKILL...

    again = voiceflex("export", "long.yaml", "-o", "out", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert listing(final.parent) == ["long.mp3"]  # ...until the next export into the folder
    assert mp3_title(final) == "Long routine, second take"
    assert abs(decoded_ms(final) - planned_ms(tmp_path / "long.yaml", env)) <= 50


def test_sigkill_while_cues_are_spoken_leaves_nothing_after_the_next_run(tmp_path):
    (tmp_path / "many.yaml").write_text(MANY_CUES)
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    env = env_for(cache, tmp)
    export = start("export", "many.yaml", "-o", "out", env=env, cwd=tmp_path)
    wait_until(lambda: len(list(cache.glob("*.clip"))) >= 5, export, "cues were being spoken")
    export.kill()
    export.wait(timeout=WAIT)
    wait_gone(WORKER_MAIN)  # its workers see the connection close and end
    assert [p.name for p in tmp.iterdir() if p.name.startswith("voiceflex-workers-")]  # left behind...

    again = voiceflex("export", "many.yaml", "-o", "out", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert list(tmp.iterdir()) == []  # ...and swept by the next run
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no partial cache entry
    assert listing(tmp_path / "out") == ["many.mp3"]


def _workers_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and WORKER_MAIN.encode() in cmdline:
                found.append(int(proc.name))
    return found


def test_a_speech_worker_killed_mid_render_is_replaced_and_the_export_completes(tmp_path):
    (tmp_path / "many.yaml").write_text(MANY_CUES)
    cache = tmp_path / "cache"
    env = env_for(cache, tmp_path / "tmp")
    export = start("export", "many.yaml", "-o", "out", env=env, cwd=tmp_path)
    wait_until(lambda: len(list(cache.glob("*.clip"))) >= 5, export, "cues were being spoken")
    victims = wait_until(lambda: _workers_of(export.pid), export, "a speech worker was found")
    os.kill(victims[0], signal.SIGKILL)  # succeeds: the worker was alive, its pool at work
    out, err = export.communicate(timeout=WAIT)
    assert export.returncode == 0, err
    assert err == ""
    assert len(list(cache.glob("*.clip"))) == 150  # every cue spoken once, the killed one again
    assert abs(decoded_ms(tmp_path / "out" / "many.mp3") - planned_ms(tmp_path / "many.yaml", env)) <= 50


# ---- a full disk -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs; needs the right to mount, as root in CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (test_export_real covers a size limit instead)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_keeps_the_previous_file_and_leaves_nothing(small_disk, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    routine = work / "short.yaml"
    routine.write_text(SHORT.format(title="Short"))
    env = env_for(tmp_path / "cache", tmp_path / "tmp")
    first = voiceflex("export", "short.yaml", "-o", str(small_disk), env=env, cwd=work)
    assert first.returncode == 0, first.stderr
    final = small_disk / "short.mp3"
    previous = final.read_bytes()

    # Fill the disk so that about half a new export fits, and change the routine.
    room = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(bytes(room.f_bavail * room.f_frsize - len(previous) // 2))
    routine.write_text(SHORT.format(title="Short, second take"))
    full = voiceflex("export", "short.yaml", "-o", str(small_disk), env=env, cwd=work)
    assert full.returncode == 1
    assert full.stderr.startswith("voiceflex: ") and full.stderr.count("\n") == 1, full.stderr
    assert "No space left on device" in full.stderr
    assert "short.mp3" in full.stderr and ".part" not in full.stderr  # the name the user knows
    assert final.read_bytes() == previous
    assert listing(small_disk) == ["filler", "short.mp3"]

    filler.unlink()
    again = voiceflex("export", "short.yaml", "-o", str(small_disk), env=env, cwd=work)
    assert again.returncode == 0, again.stderr
    assert listing(small_disk) == ["short.mp3"]
    assert mp3_title(final) == "Short, second take"


# ---- missing or failing programs and libraries ---------------------------------------------


@pytest.fixture(scope="module")
def short_routine(tmp_path_factory) -> tuple[Path, Path]:
    """A short routine and a voice cache holding its cues."""
    folder = tmp_path_factory.mktemp("short")
    (folder / "short.yaml").write_text(SHORT.format(title="Short"))
    cache = folder / "cache"
    result = voiceflex("plan", "short.yaml", env=env_for(cache, folder / "tmp"), cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "short.yaml", cache


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("voiceflex: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_without_ffmpeg_export_says_how_to_install_it(short_routine, tmp_path):
    routine, cache = short_routine
    shutil.copy(routine, tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    result = voiceflex("export", "short.yaml", "-o", "out", env=env_for(cache, tmp_path / "tmp", PATH=str(empty)),
                       cwd=tmp_path)
    assert one_line_error(result) == ("voiceflex: ffmpeg is not installed; it encodes MP3 files; "
                                      "install ffmpeg: sudo apt-get install ffmpeg")
    assert listing(tmp_path / "out") == []


def test_without_the_espeak_program_its_engine_says_how_to_install_it(tmp_path):
    (tmp_path / "r.yaml").write_text("title: x\nvoice: {engine: espeak-ng}\nsteps:\n  - say: Hello.\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = voiceflex("export", "r.yaml", "-o", "out", env=env_for(tmp_path / "cache", tmp_path / "tmp",
                                                                    PATH=str(empty)), cwd=tmp_path)
    assert one_line_error(result) == ("voiceflex: the espeak-ng program is not installed; install espeak-ng: "
                                      "sudo apt-get install espeak-ng (or run scripts/setup)")


# The real command line, in a process where looking up libespeak-ng finds nothing.
_NO_LIBESPEAK = """
import sys
from voiceflex.voice import pyttsx3_engine
pyttsx3_engine._LIB_DIRS = ()
pyttsx3_engine.find_library = lambda name: None
from voiceflex.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_libespeak_the_default_engine_says_how_to_install_it(tmp_path):
    (tmp_path / "r.yaml").write_text("title: x\nsteps:\n  - say: Hello.\n")
    result = subprocess.run([sys.executable, "-c", _NO_LIBESPEAK, "export", "r.yaml", "-o", "out"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=env_for(tmp_path / "cache", tmp_path / "tmp"))
    assert one_line_error(result) == ("voiceflex: libespeak-ng is not installed; pyttsx3 speaks through it; "
                                      "install espeak-ng: sudo apt-get install espeak-ng (or run scripts/setup)")


FAILING_FFMPEG = """#!/bin/sh
echo "Unknown encoder 'libmp3lame'" >&2
exit 1
"""


def test_a_failing_ffmpeg_is_one_line_and_leaves_the_previous_file(short_routine, tmp_path):
    routine, cache = short_routine
    shutil.copy(routine, tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "short.mp3").write_bytes(b"the previous export")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(FAILING_FFMPEG)
    (bin_dir / "ffmpeg").chmod(0o755)
    env = env_for(cache, tmp_path / "tmp", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = voiceflex("export", "short.yaml", "-o", "out", env=env, cwd=tmp_path)
    assert one_line_error(result) == "voiceflex: ffmpeg could not encode short.mp3: Unknown encoder 'libmp3lame'"
    assert listing(tmp_path / "out") == ["short.mp3"]
    assert (tmp_path / "out" / "short.mp3").read_bytes() == b"the previous export"


# ---- a damaged voice cache -----------------------------------------------------------------


def test_a_damaged_cache_entry_is_spoken_again_never_exported(tmp_path):
    # espeak-ng's command line speaks byte for byte alike every time, so the second
    # export can be compared byte for byte (pyttsx3 varies a little from process to process).
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        title: Cache
        voice: {engine: espeak-ng}
        steps:
          - say: Kneel on your left knee.
          - hold: 3s
            say: Hold it there.
          - say: Now breathe out slowly and relax.
        """))
    cache = tmp_path / "cache"
    env = env_for(cache, tmp_path / "tmp")
    first = voiceflex("export", "r.yaml", "-o", "one", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    entries = sorted(cache.glob("*.clip"), key=lambda p: p.stat().st_size)
    assert len(entries) == 3
    good = {p: p.read_bytes() for p in entries}
    flipped, truncated = entries[-1], entries[-2]
    data = bytearray(good[flipped])
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(b ^ 0xFF for b in data[middle:middle + 200])  # loud damage
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(good[truncated][: len(good[truncated]) // 2])

    second = voiceflex("export", "r.yaml", "-o", "two", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "two" / "r.mp3").read_bytes() == (tmp_path / "one" / "r.mp3").read_bytes()
    assert {p: p.read_bytes() for p in entries} == good  # both entries written again, whole


# ---- four exports at once ---------------------------------------------------------------------


def test_four_exports_at_once_sharing_an_empty_cache_come_out_identical(tmp_path):
    (tmp_path / "short.yaml").write_text(SHORT.format(title="Short"))
    env = env_for(tmp_path / "cache", tmp_path / "tmp")
    exports = [start("export", "short.yaml", "-o", f"out{i}", env=env, cwd=tmp_path) for i in range(4)]
    for export in exports:
        out, err = export.communicate(timeout=300)
        assert export.returncode == 0, err
    files = [tmp_path / f"out{i}" / "short.mp3" for i in range(4)]
    assert len({f.read_bytes() for f in files}) == 1
    assert all(listing(f.parent) == ["short.mp3"] for f in files)
    assert abs(decoded_ms(files[0]) - planned_ms(tmp_path / "short.yaml", env)) <= 50
    assert list((tmp_path / "tmp").iterdir()) == []


def test_four_exports_at_once_into_one_folder_leave_one_whole_file(long_export, tmp_path):
    # The cues are cached, so all four are encoding into the folder at the same time.
    shutil.copy(long_export.folder / "long.yaml", tmp_path)
    env = env_for(long_export.cache, tmp_path / "tmp")
    exports = [start("export", "long.yaml", "-o", "out", env=env, cwd=tmp_path) for _ in range(4)]
    for export in exports:
        out, err = export.communicate(timeout=300)
        assert export.returncode == 0, err
        assert out == "out/long.mp3\n"
    assert listing(tmp_path / "out") == ["long.mp3"]
    assert (tmp_path / "out" / "long.mp3").read_bytes() == long_export.previous  # whole, and as exported alone


# ---- text is data: no shell, no markup ------------------------------------------------------


@pytest.mark.parametrize("engine_name", ["pyttsx3", "espeak-ng"])
def test_cue_text_is_spoken_literally_never_run(engine_name, tmp_path):
    marks = [tmp_path / f"ran{i}" for i in range(5)]
    hostile = [f"$(touch {marks[0]})", f"`touch {marks[1]}`", f"; touch {marks[2]}", f"| touch {marks[3]} &&",
               f"-w {marks[4]}", "--help"]
    markup = {
        "<speak>Hello</speak>": "Hello",           # SSML would leave only the word
        "[[h@l'oU]]": "Hello",                    # espeak phoneme codes for "hello"
        'A <break time="9s"/> B': "A B",          # SSML would add nine seconds of silence
    }
    engine = get_engine(engine_name)
    texts = [*hostile, *markup, *set(markup.values())]
    clips = dict(engine.render(texts, "gmw/en-us", 160, workers=2))
    assert [m for m in marks if m.exists()] == []
    assert all(clips[t].ms > 300 for t in hostile)  # each spoken, as words
    for text, meant in markup.items():
        assert clips[text].ms > 1.5 * clips[meant].ms, (text, clips[text].ms, clips[meant].ms)
    assert clips['A <break time="9s"/> B'].ms < 9000
    assert list(tmp_path.iterdir()) == []


# ---- no network ----------------------------------------------------------------------------

# Loaded by every Python process of the export (the CLI and its speech workers, through
# PYTHONPATH): logs every attempt to reach a network.
_SITECUSTOMIZE = """
import os, socket, sys

def _hook(event, args):
    if event == "socket.__new__" and args[1] == socket.AF_UNIX:
        return
    if event.startswith(("socket.", "urllib", "http.", "ftplib", "smtplib", "webbrowser")):
        with open(os.environ["NETWORK_LOG"], "a") as log:
            log.write(f"{os.getpid()} {event} {args!r}\\n")

sys.addaudithook(_hook)
"""


def test_an_export_from_scratch_needs_no_network(tmp_path):
    (tmp_path / "short.yaml").write_text(SHORT.format(title="Offline"))
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    log = tmp_path / "network.log"
    env = env_for(tmp_path / "cache", tmp_path / "tmp", NETWORK_LOG=str(log), PYTHONPATH=str(hooks))
    # In a network namespace with no network at all, when this machine allows one: then
    # ffmpeg and espeak-ng could not reach one either.
    isolate = ["unshare", "-n"] if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0 \
        else []
    result = subprocess.run([*isolate, *VOICEFLEX, "export", "short.yaml", "-o", "out"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert listing(tmp_path / "out") == ["short.mp3"]
    assert list((tmp_path / "cache").glob("*.clip"))  # the cues were spoken here, not fetched
    assert not log.exists(), log.read_text()
