"""Export without a real encoder: atomic output, failures, names, playlists, tags."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from helpers.fakes import FakeClip, Meta, export_parts

from voiceflex import export
from voiceflex.audio.rate import RATE
from voiceflex.errors import EncoderError, Location, MissingComponentError, UsageError
from voiceflex.export import atomic, encoder, names
from voiceflex.export.tags import Tags, write_tags
from voiceflex.routine.model import DEFAULT_TONES
from voiceflex.timeline import Chapter, Event, Timeline

HERE = Location("test.yaml", 1, 1)


def routine(seconds_per_chapter: float = 4.0, titles=("Set up", "Stretch: left", "Stretch: right")):
    """A small timeline of noisy cues and tones, one chapter per title."""
    rng = np.random.default_rng(0)
    clips, events, chapters, t = {}, [], [], 0
    for i, title in enumerate(titles):
        text = f"cue {i}"
        burst = rng.standard_normal(int(0.8 * RATE)) * np.hanning(int(0.8 * RATE)) * 3000
        clips[text] = FakeClip(burst.astype(np.int16))
        events.append(Event("speech", t + 100, t + 900, i, HERE, text=text))
        events.append(Event("tone", t + 1200, t + 1380, i, HERE, name="start", freq_hz=880.0))
        end = t + int(seconds_per_chapter * 1000)
        chapters.append(Chapter(title, t, end))
        t = end
    return Timeline("Hip flexor stretch", t, tuple(chapters), tuple(events)), clips


FAKE_FFMPEG = """\
#!{python}
import os, sys, time
out = sys.argv[-1]
mode = os.environ.get("FAKE_FFMPEG", "ok")
with open(os.environ.get("FAKE_FFMPEG_PIDS", os.devnull), "a") as f:
    f.write(f"{{os.getpid()}}\\n")
def silent_mp3(samples):
    # What LAME writes for silence: an Info frame (frame count, delay 576, padding) and
    # frames of 64 kbit/s, 22.05 kHz, mono with no audio data; it decodes to `samples`.
    frames = samples // 576 + 2
    header = bytes([0xFF, 0xF3, 0x80, 0xC0])
    info = bytearray(header + bytes(204))
    info[13:17] = b"Info"
    info[20] = 0x0F
    info[21:25] = frames.to_bytes(4, "big")
    info[133:137] = b"LAME"
    info[154:157] = (576 << 12 | (frames * 576 - 576 - samples)).to_bytes(3, "big")
    return bytes(info) + (header + bytes(204)) * frames
if mode == "hang":
    import subprocess
    child = subprocess.Popen(["sleep", "600"])  # a wrapper's child, in ffmpeg's session
    with open(os.environ["FAKE_FFMPEG_PIDS"], "a") as f:
        f.write(f"{{child.pid}}\\n")
    child.wait()
with open(out, "wb") as f:
    f.write(b"\\xff\\xfb" * 100)  # something, as ffmpeg would have started writing
    if mode in ("ok", "garbage"):
        size = 0
        while True:
            data = sys.stdin.buffer.read(65536)
            if not data:
                break
            size += len(data)
        f.seek(0)
        f.write(silent_mp3(size // 2) if mode == "ok" else os.urandom(size // 20))
    elif mode == "fail":
        sys.stdin.buffer.read(50000)
        print("[libmp3lame] frame size 1152", file=sys.stderr)
        print("av_interleaved_write_frame(): No space left on device", file=sys.stderr)
        sys.exit(1)
    elif mode == "slow":
        while sys.stdin.buffer.read(4096):
            time.sleep(0.01)
"""


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch):
    """An 'ffmpeg' on PATH that behaves as $FAKE_FFMPEG says and logs its pid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ffmpeg"
    script.write_text(FAKE_FFMPEG.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_FFMPEG_PIDS", str(pids))
    return pids


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_mp3_export_writes_the_file_and_its_tags(tmp_path, fake_ffmpeg):
    tl, clips = routine()
    out = tmp_path / "audio" / "hip.mp3"
    assert export_parts(tl, Meta(author=None), clips, DEFAULT_TONES, out) == out
    assert listing(out.parent) == ["hip.mp3"]
    from mutagen.id3 import ID3

    tags = ID3(out)
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Kneeling hip flexor stretch"
    assert str(tags["TPE1"]) == "voiceflex"  # no author: voiceflex
    assert [c.sub_frames["TIT2"].text[0] for c in tags.getall("CHAP")] != []


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_a_failing_encoder_leaves_the_old_file_and_no_temp(tmp_path, fake_ffmpeg, monkeypatch, fmt):
    monkeypatch.setenv("FAKE_FFMPEG", "fail")
    calls = {"n": 0}
    real = wave.Wave_write.writeframesraw

    def full_disk(self, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(wave.Wave_write, "writeframesraw", full_disk)
    tl, clips = routine(seconds_per_chapter=8)
    out = tmp_path / f"hip.{fmt}"
    out.write_bytes(b"the previous export")
    with pytest.raises(EncoderError, match="No space left on device"):
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, fmt=fmt)
    assert out.read_bytes() == b"the previous export"
    assert [n for n in listing(tmp_path) if n not in ("bin", "pids")] == [f"hip.{fmt}"]


def test_ctrl_c_mid_encode_stops_ffmpeg_and_cleans_up(tmp_path, fake_ffmpeg, monkeypatch):
    monkeypatch.setenv("FAKE_FFMPEG", "slow")
    tl, clips = routine(seconds_per_chapter=20)
    out = tmp_path / "hip.mp3"

    def interrupt(done, total):
        # Mid-encode: audio went out and the encoder is up (it logs its pid
        # first; the pipe to it holds more than one chunk, so the first write
        # does not wait for it).
        if done > 0 and fake_ffmpeg.exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, on_progress=interrupt)
    assert listing(tmp_path) == ["bin", "pids"]
    for pid in map(int, fake_ffmpeg.read_text().split()):
        with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
            os.kill(pid, 0)


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("split", [False, True])
def test_an_encoder_that_exits_0_with_garbage_keeps_the_previous_file(tmp_path, fake_ffmpeg, monkeypatch,
                                                                      split):
    tl, clips = routine(seconds_per_chapter=8)
    out = tmp_path / ("hip" if split else "hip.mp3")
    previous = out / "01-set-up.mp3" if split else out
    if split:  # a set the previous export wrote (voiceflex replaces only its own files)
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, split=True)
    else:
        previous.write_bytes(b"the previous export")
    before = previous.read_bytes()
    monkeypatch.setenv("FAKE_FFMPEG", "garbage")
    with pytest.raises(EncoderError, match="but not a whole MP3 file") as caught:
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, split=split)
    assert ".part" not in str(caught.value) and "voiceflex-" not in str(caught.value)
    assert previous.read_bytes() == before
    assert not [n for n in listing(previous.parent) if ".part" in n]


@pytest.mark.parametrize("interrupt", [False, True], ids=["timeout", "ctrl-c"])
def test_a_hung_encoder_and_its_children_are_stopped(tmp_path, fake_ffmpeg, monkeypatch, interrupt):
    """An 'ffmpeg' that is a wrapper waiting on a child of its own and never reads: after the
    timeout (made 1 s here; it grows with the track) or Ctrl-C, both are gone."""
    monkeypatch.setenv("FAKE_FFMPEG", "hang")
    monkeypatch.setattr(encoder, "TIMEOUT_BASE_S", 60.0 if interrupt else 1.0)
    monkeypatch.setattr(encoder, "TIMEOUT_PER_AUDIO_S", 0.0)
    tl, clips = routine(seconds_per_chapter=4)
    out = tmp_path / "hip.mp3"
    out.write_bytes(b"the previous export")

    def progress(done, total):
        if interrupt:  # once the wrapper has started its child
            for _ in range(200):
                if fake_ffmpeg.exists() and len(fake_ffmpeg.read_text().split()) == 2:
                    raise KeyboardInterrupt
                time.sleep(0.05)

    expected = KeyboardInterrupt if interrupt else EncoderError
    with pytest.raises(expected) as caught:
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, on_progress=progress)
    if not interrupt:
        assert str(caught.value) == "ffmpeg did not finish hip.mp3 within 1 s and was stopped"
    assert out.read_bytes() == b"the previous export"
    pids = list(map(int, fake_ffmpeg.read_text().split()))
    for _ in range(200):  # a SIGKILLed grandchild is gone a moment later, reaped by init
        if not any(_running(pid) for pid in pids):
            break
        time.sleep(0.05)
    assert len(pids) == 2 and not any(_running(pid) for pid in pids), pids


def test_missing_ffmpeg_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    tl, clips = routine()
    with pytest.raises(MissingComponentError) as caught:
        export_parts(tl, Meta(), clips, DEFAULT_TONES, tmp_path / "out" / "hip.mp3")
    assert caught.value.hint == "install ffmpeg: sudo apt-get install ffmpeg"
    assert listing(tmp_path / "out") == []


def test_wav_export_is_exact_in_length(tmp_path):
    tl, clips = routine()
    progress = []
    out = export_parts(tl, Meta(), clips, DEFAULT_TONES, tmp_path / "hip.wav", fmt="wav",
                       on_progress=lambda done, total: progress.append((done, total)))
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        assert w.getnframes() == round(tl.duration_ms * RATE / 1000)
    assert progress[-1][0] == progress[-1][1] == round(tl.duration_ms * RATE / 1000)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_split_writes_chapter_files_and_a_relative_playlist(tmp_path):
    folder = tmp_path / "hip-flexor"
    before, old_clips = routine(titles=("One", "Two", "Three", "Old chapter"))
    export_parts(before, Meta(), old_clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    (folder / "notes.txt").write_text("mine")
    tl, clips = routine(titles=("Set up", "Stretch: left", "Stretch / right\nside"))
    playlist = export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    assert playlist == folder / "hip-flexor.m3u8"
    # The previous export's files this one does not write are gone; the user's file stays.
    assert listing(folder) == [".voiceflex-split.json", "01-set-up.wav", "02-stretch-left.wav",
                               "03-stretch-right-side.wav", "hip-flexor.m3u8", "notes.txt"]
    assert playlist.read_text() == (
        "#EXTM3U\n"
        "#EXTINF:4,Set up\n01-set-up.wav\n"
        "#EXTINF:4,Stretch: left\n02-stretch-left.wav\n"
        "#EXTINF:4,Stretch / right side\n03-stretch-right-side.wav\n")
    lengths = []
    for name in listing(folder)[1:4]:
        with wave.open(str(folder / name)) as w:
            lengths.append(w.getnframes())
    assert lengths == [round(4000 * RATE / 1000)] * 3


def test_split_failure_leaves_the_previous_set(tmp_path, fake_ffmpeg, monkeypatch):
    tl, clips = routine()
    folder = tmp_path / "hip"
    export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True)
    before = {name: (folder / name).read_bytes() for name in listing(folder)}
    monkeypatch.setenv("FAKE_FFMPEG", "fail")
    with pytest.raises(EncoderError):
        export_parts(tl, Meta(title="Other"), clips, DEFAULT_TONES, folder, split=True)
    assert {name: (folder / name).read_bytes() for name in listing(folder)} == before


def test_dead_exports_temp_files_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".hip.mp3.voiceflex-0123abcd-{dead.pid}.part"
    live = tmp_path / f".hip.mp3.voiceflex-0123abcd-{os.getpid()}.part"
    mine = tmp_path / ".hip.mp3.part"  # not ours: left alone
    for p in (stale, live, mine):
        p.write_bytes(b"x")
    atomic.prepare_folder(tmp_path)
    assert listing(tmp_path) == sorted([live.name, mine.name])


@pytest.mark.parametrize("title,expected", [
    ("Stretch: left", "stretch-left"),
    ("../../etc/passwd", "etc-passwd"),
    ("..", "chapter"),
    ("", "chapter"),
    ("a/b\\c", "a-b-c"),
    ("tab\there\x00nul\nline", "tab-here-nul-line"),
    ("Hüfte dehnen", "hufte-dehnen"),
    ("Rounds: 2 of 3", "rounds-2-of-3"),
    ("ストレッチ", "ストレッチ"),
    ("🙂🙂", "chapter"),
    ("x" * 200, "x" * names.MAX_SLUG),
])
def test_names_are_safe(title, expected):
    assert names.slug(title) == expected


def test_chapter_file_names_stay_in_their_folder():
    for title in ["../up", "/abs/path", ".hidden", "C:\\windows", "a\x1fb"]:
        name = names.chapter_file_name(1, 3, title, "mp3")
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert Path("/base", name).resolve().parent == Path("/base")
    assert names.chapter_file_name(7, 120, "Go", "mp3") == "007-go.mp3"


def test_tags_are_id3v23_with_an_ordered_chapter_table(tmp_path):
    from mutagen.id3 import ID3, CTOCFlags

    path = tmp_path / "x.mp3"
    path.write_bytes(b"\xff\xfb\x90\x00" * 200)
    chapters = [Chapter(f"Chapter {i} " + "long " * (i % 3), i * 1000, (i + 1) * 1000)
                for i in range(12)]
    write_tags(path, Tags(title="Tïtle", artist="Ann", comment="Desc", cover_png=b"\x89PNG fake",
                          length_ms=12000, chapters=chapters))
    tags = ID3(path)
    assert tags.version[:2] == (2, 3)
    assert [str(tags[f]) for f in ("TIT2", "TPE1", "TALB")] == ["Tïtle", "Ann", "voiceflex"]
    assert tags.getall("COMM")[0].text == ["Desc"]
    assert tags.getall("APIC")[0].mime == "image/png"
    toc = tags.getall("CTOC")[0]
    assert toc.flags & CTOCFlags.TOP_LEVEL and toc.flags & CTOCFlags.ORDERED
    by_id = {c.element_id: c for c in tags.getall("CHAP")}
    ordered = [by_id[i] for i in toc.child_element_ids]
    assert [(c.start_time, c.end_time) for c in ordered] == [
        (c.start_ms, c.end_ms) for c in chapters]
    assert [c.sub_frames["TIT2"].text[0] for c in ordered] == [c.title for c in chapters]


def test_cover_is_a_square_png():
    from voiceflex.export.cover import cover_png

    png = cover_png("Kneeling hip flexor stretch with a rather long title indeed")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png))
    assert image.size[0] == image.size[1] >= 300
    assert len(np.unique(np.asarray(image.convert("L")))) > 50  # text and gradient, not blank


def test_encoder_failure_message_names_the_file_and_ffmpegs_last_line(tmp_path, fake_ffmpeg,
                                                                         monkeypatch):
    monkeypatch.setenv("FAKE_FFMPEG", "fail")
    sink = encoder.Mp3Sink(tmp_path / "x.mp3", 64)
    with pytest.raises(EncoderError) as caught:
        for _ in range(100):
            sink.write(np.zeros(22050, np.int16))
        sink.close()
    sink.abort()
    assert str(caught.value) == (
        "ffmpeg could not encode x.mp3: av_interleaved_write_frame(): No space left on device")


def test_module_docs_show_the_api():
    assert "write_split" in textwrap.dedent(export.__doc__)


@pytest.mark.parametrize("stem", ["a" * 250, "é" * 125, "é" * 120 + "abc"], ids=["250-bytes", "125-e-acute", "mixed"])
@pytest.mark.parametrize("how", ["mp3", "wav", "split"])
def test_a_long_name_that_fits_exports(tmp_path, fake_ffmpeg, stem, how):
    """The hidden temporary name is longer than the final one: it is the one cut short."""
    tl, clips = routine(seconds_per_chapter=2)
    fmt = "wav" if how == "wav" else "mp3"
    out = tmp_path / (stem if how == "split" else f"{stem}.{fmt}")
    written = export_parts(tl, Meta(), clips, DEFAULT_TONES, out, fmt=fmt, split=how == "split")
    assert written == (out / f"{stem}.m3u8" if how == "split" else out)
    assert written.stat().st_size > 0
    assert not [n for n in listing(written.parent) if ".part" in n]


@pytest.mark.parametrize("split", [False, True])
def test_a_name_past_the_file_systems_limit_names_the_final_file(tmp_path, fake_ffmpeg, split):
    tl, clips = routine(seconds_per_chapter=2)
    # A folder of 252 bytes, whose playlist would be 257; a file of 256.
    out = tmp_path / ("é" * 126 if split else "é" * 126 + ".mp3")
    with pytest.raises(EncoderError) as caught:
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out, split=split)
    final = out / f"{out.name}.m3u8" if split else out
    assert str(caught.value) == f"could not write {final}: File name too long"
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]


def test_split_leaves_files_it_did_not_write(tmp_path):
    """A playlist in the folder lists the user's files: they are not voiceflex's to remove."""
    folder = tmp_path / "hip"
    folder.mkdir()
    (folder / "precious.mp3").write_bytes(b"mine")
    (folder / "notes.txt").write_text("mine too")
    (folder / "other.m3u8").write_text("#EXTM3U\nprecious.mp3\nnotes.txt\n")
    tl, clips = routine()
    export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    # A playlist naming them under the export's own playlist name, written by voiceflex's
    # previous export: still not a licence to remove them.
    playlist = folder / "hip.m3u8"
    playlist.write_text(playlist.read_text() + "precious.mp3\nnotes.txt\n")
    manifest_file = folder / ".voiceflex-split.json"
    stamps = json.loads(manifest_file.read_text())
    stamps["files"]["hip.m3u8"] = [playlist.stat().st_size, playlist.stat().st_mtime_ns, playlist.stat().st_ino]
    manifest_file.write_text(json.dumps(stamps))
    tl2, clips2 = routine(titles=("Only one",))
    export_parts(tl2, Meta(), clips2, DEFAULT_TONES, folder, split=True, fmt="wav")
    assert (folder / "precious.mp3").read_bytes() == b"mine"
    assert (folder / "notes.txt").read_text() == "mine too"
    assert listing(folder) == [".voiceflex-split.json", "01-only-one.wav", "hip.m3u8", "notes.txt",
                               "other.m3u8", "precious.mp3"]


def test_split_refuses_to_replace_a_file_it_did_not_write(tmp_path):
    folder = tmp_path / "hip"
    folder.mkdir()
    (folder / "02-stretch-left.wav").write_bytes(b"the user's own recording")
    tl, clips = routine()
    with pytest.raises(UsageError, match="02-stretch-left.wav is in the way: voiceflex did not write it"):
        export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    assert listing(folder) == ["02-stretch-left.wav"]
    # Once written by voiceflex and then changed by the user, it is the user's again.
    (folder / "02-stretch-left.wav").unlink()
    export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    (folder / "01-set-up.wav").write_bytes(b"edited")
    with pytest.raises(UsageError, match="01-set-up.wav is in the way"):
        export_parts(tl, Meta(), clips, DEFAULT_TONES, folder, split=True, fmt="wav")
    assert (folder / "01-set-up.wav").read_bytes() == b"edited"


def test_split_refuses_a_symlinked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "hip").symlink_to(elsewhere)
    tl, clips = routine()
    with pytest.raises(UsageError, match="is a symbolic link"):
        export_parts(tl, Meta(), clips, DEFAULT_TONES, out / "hip", split=True, fmt="wav")
    assert listing(elsewhere) == []


@pytest.mark.integration
@pytest.mark.parametrize("remainder", [0, 1, 45, 46, 47, 575])
def test_an_mp3_decodes_to_exactly_the_samples_it_was_fed(tmp_path, remainder):
    # ffmpeg's muxer writes at most 1105 samples of end padding; LAME pads a
    # track of n samples by up to 1151, so n % 576 from 1 to 46 decoded up to
    # 46 samples long (a desk-reset of 6119470 samples gave 6119471).
    import shutil

    if not (shutil.which("ffmpeg") and shutil.which("mpg123")):
        pytest.skip("needs ffmpeg and mpg123")
    samples = 576 * 40 + remainder
    noise = (np.random.default_rng(remainder).standard_normal(samples) * 3000).astype(np.int16)
    path = tmp_path / "n.mp3"
    sink = encoder.Mp3Sink(path, 64, seconds=samples / RATE)
    sink.write(noise)
    sink.close()
    encoder.check_written(path, "mp3", samples)  # exact, or EncoderError
    with pytest.raises(EncoderError, match=f"decodes to {samples} samples instead of {samples - 1}"):
        encoder.check_written(path, "mp3", samples - 1)  # one sample off is not whole
    for command in (["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                    ["mpg123", "-q", "-s", str(path)]):
        assert len(subprocess.run(command, capture_output=True, check=True).stdout) == 2 * samples
