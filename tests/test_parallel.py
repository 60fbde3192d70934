"""export/parallel.py: where a long MP3 is cut into parts, and exports encoded in parts at once.

The splice itself (mp3frames) has its own tests (test_mp3frames.py); these
check the plan of the parts on hand-made timelines, and whole exports
through export.write with `writer._cores` forced, against the one-part
encode (LAME is deterministic: both decode alike up to the first join).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.fakes import FakeClip, Meta

from voiceflex import export
from voiceflex.audio.mixer import total_samples
from voiceflex.audio.output_format import output_format
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.audio.track import Track
from voiceflex.errors import EncoderError, Location
from voiceflex.export import mp3frames, parallel, writer
from voiceflex.export.parallel import MARGIN, MAX_PARTS, MIN_PART, REACH, WARM
from voiceflex.routine.model import DEFAULT_TONES
from voiceflex.timeline import Chapter, Event, Timeline
from voiceflex.voice.cache import default_cache_dir

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="needs ffmpeg and ffprobe")

HERE = Location("parallel.yaml", 1, 1)
# Facts of the format, stated here apart from the module's constants: an MPEG-2
# layer III frame holds 576 samples; LAME delays its output by 576 samples and
# the decoder by 529, so frame f decodes to track samples from 576 f - 1105 on.
FRAME = 576
CODEC_DELAY = 576 + 529


def test_the_module_puts_frames_where_the_format_does():
    assert (parallel.FRAME, parallel.CODEC_DELAY) == (FRAME, CODEC_DELAY)


# --- hand-made timelines ---------------------------------------------------------------------


def three_minutes() -> tuple[Timeline, dict[str, FakeClip]]:
    """~3 minutes: noisy speech-like cues, beeps and breathing glides, gaps of 0.45-0.85 s and 0.7 s; six chapters."""
    rng = np.random.default_rng(0)
    clips: dict[str, FakeClip] = {}
    events, chapters, t, i, chapter_start = [], [], 0, 0, 0
    while t < 175_000:
        text = f"cue {i % 7}"
        if text not in clips:
            n = int((0.6 + 0.2 * (i % 7)) * RATE)
            voice = (rng.standard_normal(n) * 3000 + 1000 * np.sin(np.arange(n) * 2 * np.pi * 300 / RATE))
            clips[text] = FakeClip((voice * np.hanning(n)).astype(np.int16))
        ms = round(len(clips[text].samples) * 1000 / RATE)
        events.append(Event("speech", t, t + ms, len(chapters), HERE, text=text))
        t += ms + 200
        events.append(Event("tone", t, t + 180, len(chapters), HERE, name="start", freq_hz=880.0))
        t += 180 + 450 + 100 * (i % 5)
        if i % 9 == 8:
            events.append(Event("tone", t, t + 4000, len(chapters), HERE, name="inhale",
                                freq_hz=(300.0, 600.0)))
            t += 4000 + 700
        if t - chapter_start > 30_000:
            chapters.append(Chapter(f"Chapter {len(chapters) + 1}", chapter_start, t))
            chapter_start = t
        i += 1
    duration = t + 1000
    chapters.append(Chapter(f"Chapter {len(chapters) + 1}", chapter_start, duration))
    return Timeline("Three minutes of cues", duration, tuple(chapters), tuple(events)), clips


# --- what a good plan is ---------------------------------------------------------------------


def joins_of(parts) -> list[int]:
    """The frames (on the whole track's grid) where each part after the first is meant to take over."""
    return [after.join for after in parts[1:]]


def check_plan(total: int, parts, cores: int) -> None:
    assert 2 <= len(parts) <= min(cores, MAX_PARTS)
    # The parts cover the track in order.
    assert parts[0].start == 0 and parts[0].join == 0
    assert parts[-1].stop == total
    for p in parts:
        assert p.start % FRAME == 0  # on the grid of one encode of the whole track
        assert 0 <= p.start < p.stop <= total
    joins = joins_of(parts)
    assert joins == sorted(set(joins))
    for before, after in zip(parts, parts[1:]):
        # The later part starts WARM frames before the join; the earlier one
        # encodes MARGIN of the track past the last frame the join may move to.
        assert after.start == (after.join - WARM) * FRAME
        assert before.stop >= (after.join + REACH) * FRAME - CODEC_DELAY + MARGIN
    # Parts of about equal length, none under MIN_PART.
    spans = np.diff([0, *[j * FRAME - CODEC_DELAY for j in joins], total])
    assert spans.min() >= MIN_PART - FRAME
    assert spans.max() - spans.min() <= 2 * FRAME


# --- plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [2, 3, 4, 16])
def test_plan_cuts_a_three_minute_track_in_two_at_its_middle(cores):
    timeline, _ = three_minutes()
    total = total_samples(timeline)
    parts = parallel.plan(total, cores)
    check_plan(total, parts, cores)
    # Three minutes hold two parts of at least a minute (MIN_PART) and no more.
    assert len(parts) == min(cores, total // MIN_PART, MAX_PARTS) == 2
    assert abs(joins_of(parts)[0] * FRAME - CODEC_DELAY - total / 2) <= FRAME / 2


def test_plan_leaves_a_track_shorter_than_two_parts_whole():
    assert parallel.plan(2 * MIN_PART - 1, 8) == []
    parts = parallel.plan(2 * MIN_PART, 8)
    check_plan(2 * MIN_PART, parts, 8)
    assert len(parts) == 2


@pytest.mark.parametrize("cores", [1, 0])
def test_plan_on_one_core_is_one_part(cores):
    assert parallel.plan(ms_to_samples(30 * 60_000), cores) == []


@pytest.mark.parametrize("minutes, cores, count", [
    (12, 2, 2), (12, 3, 3), (12, 4, 4), (12, 8, MAX_PARTS), (12, 64, MAX_PARTS),
    (2.5, 8, 2),  # two parts of a minute or more fit, not three
    (3.5, 8, 3),
])
def test_plan_makes_a_part_per_core_up_to_MAX_PARTS(minutes, cores, count):
    total = ms_to_samples(int(minutes * 60_000))
    parts = parallel.plan(total, cores)
    check_plan(total, parts, cores)
    assert len(parts) == count


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(total=st.integers(0, ms_to_samples(7 * 3_600_000)), cores=st.integers(1, 9))
def test_every_plan_covers_the_track_on_the_grid(total, cores):
    parts = parallel.plan(total, cores)
    if parts:
        check_plan(total, parts, cores)
    assert len(parts) == (0 if min(cores, MAX_PARTS, total // MIN_PART) < 2
                          else min(cores, MAX_PARTS, total // MIN_PART))


# --- exports encoded in parts ----------------------------------------------------------------


def decode(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2")


def snr_db(signal: np.ndarray, decoded: np.ndarray) -> float:
    x, y = signal.astype(float), decoded.astype(float)
    noise = x - (x @ y) / (y @ y) * y  # LAME decodes ~0.45 dB quieter: fit the level
    return 10 * np.log10((x @ x) / (noise @ noise))


MP3_64K = output_format("mp3", "64k")


def first_join_sample(parts) -> int:
    """The track sample up to which an export in `parts` is the one-part encode's (the first join's)."""
    return joins_of(parts)[0] * FRAME - CODEC_DELAY


def assert_joins_as_good(parts, ours: np.ndarray, one_part) -> None:
    """Around each join (a quarter second each side) the coding is as good as one encode's."""
    for join in joins_of(parts):
        at = join * FRAME - CODEC_DELAY
        window = slice(at - RATE // 4, at + RATE // 4)
        assert snr_db(one_part.samples[window], ours[window]) == pytest.approx(
            snr_db(one_part.samples[window], one_part.decoded[window]), abs=1.5)


def make_track(timeline: Timeline, clips) -> Track:
    return Track(timeline, clips, DEFAULT_TONES, output=MP3_64K, memo_dir=default_cache_dir() / "levels")


def export_on(cores: int, mp: pytest.MonkeyPatch, timeline: Timeline, clips, path: Path, *,
              source=None, **kwargs) -> Path:
    """export.write as `voiceflex export` calls it, on `cores` cores; `source` wraps the track."""
    mp.setattr(writer, "_cores", lambda: cores)
    track = make_track(timeline, clips)
    try:
        return export.write(source(track) if source else track, timeline, Meta(), path,
                            output=MP3_64K, **kwargs)
    finally:
        track.close()


@pytest.fixture
def encodes(monkeypatch):
    """Every parallel.encode the writer makes: its parts and what it returned."""
    calls = []
    real = parallel.encode

    def spy(track, parts, path, *args, **kwargs):
        call = SimpleNamespace(parts=list(parts), returned=None)
        calls.append(call)
        call.returned = real(track, parts, path, *args, **kwargs)
        return call.returned

    monkeypatch.setattr(parallel, "encode", spy)
    return calls


@pytest.fixture(scope="module")
def material():
    return three_minutes()


@pytest.fixture(scope="module")
def one_part(material, tmp_path_factory):
    """The export on one core: one LAME over the whole track, and the track's own samples."""
    timeline, clips = material
    folder = tmp_path_factory.mktemp("one-part")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path_factory.mktemp("voice-cache")))
        mp.setattr(parallel, "encode", lambda *a, **k: pytest.fail("one core, yet encoded in parts"))
        path = export_on(1, mp, timeline, clips, folder / "one.mp3")
        track = make_track(timeline, clips)
        try:
            samples = np.concatenate(list(track.read()))
        finally:
            track.close()
    assert sorted(p.name for p in folder.iterdir()) == ["one.mp3"]
    return SimpleNamespace(path=path, decoded=decode(path), samples=samples)


@needs_ffmpeg
def test_a_parallel_export_decodes_like_one_encode(material, one_part, tmp_path, monkeypatch,
                                                   encodes):
    timeline, clips = material
    total = total_samples(timeline)
    out = export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3")
    assert out == tmp_path / "two.mp3"
    (call,) = encodes
    assert call.returned is True and len(call.parts) == 2  # encoded in parts, and spliced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.mp3"]  # no part left behind

    ours = decode(out)
    assert len(one_part.samples) == len(one_part.decoded) == len(ours) == total
    upto = first_join_sample(call.parts)
    np.testing.assert_array_equal(ours[:upto], one_part.decoded[:upto])
    # After the join LAME's bit allocation has another history: as good, not the same.
    # (Noise coded at 64k: ~10 dB over the whole track, the same for both.)
    for a in (0, upto):
        assert snr_db(one_part.samples[a:], ours[a:]) == pytest.approx(
            snr_db(one_part.samples[a:], one_part.decoded[a:]), abs=0.3)
    assert_joins_as_good(call.parts, ours, one_part)


@needs_ffmpeg
def test_three_parts_join_like_two(material, one_part, tmp_path, monkeypatch, encodes):
    # On three cores the middle part is cut at both ends (parts of 50 s, so
    # that three fit in the material's three minutes).
    monkeypatch.setattr(parallel, "MIN_PART", ms_to_samples(50_000))
    timeline, clips = material
    out = export_on(3, monkeypatch, timeline, clips, tmp_path / "three.mp3")
    (call,) = encodes
    assert call.returned is True and len(call.parts) == 3
    middle = call.parts[1]
    assert middle.start > 0 and middle.stop < total_samples(timeline)
    ours = decode(out)
    assert len(ours) == total_samples(timeline)
    upto = first_join_sample(call.parts)
    np.testing.assert_array_equal(ours[:upto], one_part.decoded[:upto])
    assert_joins_as_good(call.parts, ours, one_part)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.mp3"]


@needs_ffmpeg
def test_a_parallel_export_keeps_tags_and_chapters(material, one_part, tmp_path, monkeypatch,
                                                   encodes):
    import json

    from mutagen.id3 import ID3
    from mutagen.mp3 import MP3

    timeline, clips = material
    out = export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3")
    assert [c.returned for c in encodes] == [True]
    tags = ID3(out)
    assert str(tags["TIT2"]) == Meta.title
    assert str(tags["TPE1"]) == "Test Author"
    assert tags.getall("APIC")[0].data.startswith(b"\x89PNG")
    (toc,) = tags.getall("CTOC")
    by_id = {c.element_id: c for c in tags.getall("CHAP")}
    chapters = [by_id[i] for i in toc.child_element_ids]
    assert [(c.sub_frames["TIT2"].text[0], c.start_time, c.end_time) for c in chapters] == [
        (c.title, c.start_ms, c.end_ms) for c in timeline.chapters]
    assert MP3(out).info.sample_rate == RATE
    assert MP3(out).info.length == MP3(one_part.path).info.length  # its Info frame's count

    def probe(path):
        return json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-of", "json", str(path)],
            capture_output=True, text=True, check=True).stdout)

    ours = probe(out)
    assert [c["tags"]["title"] for c in ours["chapters"]] == [c.title for c in timeline.chapters]
    assert [float(c["start_time"]) for c in ours["chapters"]] == [
        c.start_ms / 1000 for c in timeline.chapters]
    assert ours["format"]["duration"] == probe(one_part.path)["format"]["duration"]


@needs_ffmpeg
def test_a_join_the_frames_refuse_falls_back_to_one_encode(material, one_part, tmp_path, monkeypatch,
                                                           encodes):
    # mp3frames' own tests refuse real frames that do not fit; here every frame is refused.
    monkeypatch.setattr(mp3frames, "_fault", lambda *args: "refused by the test")
    timeline, clips = material
    out = export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3")
    (call,) = encodes
    assert call.returned is False  # the splice refused the join...
    # ...and the one-part encode made the file: the same stream as on one core.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.mp3"]
    np.testing.assert_array_equal(decode(out), one_part.decoded)
    assert out.read_bytes() == one_part.path.read_bytes()


def assert_nothing_left(folder: Path) -> None:
    """No file in `folder` (final, temporary or part) and no ffmpeg still running."""
    assert list(folder.iterdir()) == []
    assert ffmpeg_children() == []


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this one (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == os.getpid() and name.startswith("ffmpeg"):
            found.append(int(entry.name))
    return found


class FailingTrack:
    """A track whose read of one part fails after a few chunks, as a failing mixer would."""

    def __init__(self, track, *, later: bool, after: int = 3):
        self.track, self.later, self.after = track, later, after
        self.raised: list[EncoderError] = []

    def read(self, start: int = 0, stop: int | None = None):
        for k, chunk in enumerate(self.track.read(start, stop)):
            if k == self.after and (start > 0) == self.later:
                self.raised.append(EncoderError(f"the mixer broke at sample {start} + {k} chunks"))
                raise self.raised[-1]
            yield chunk


@needs_ffmpeg
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
@pytest.mark.parametrize("later", [True, False], ids=["second-part-in-its-thread", "first-part"])
@pytest.mark.parametrize("previous", [None, b"the previous export"], ids=["new", "over-old"])
def test_a_failing_part_stops_every_encoder_and_leaves_nothing(material, tmp_path, monkeypatch,
                                                               encodes, later, previous):
    timeline, clips = material
    pids = []

    class Recorded(parallel.Mp3Sink):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pids.append(self._process.pid)

    monkeypatch.setattr(parallel, "Mp3Sink", Recorded)
    out = tmp_path / "two.mp3"
    if previous is not None:
        out.write_bytes(previous)
    sources = []

    def failing(track):
        sources.append(FailingTrack(track, later=later))
        return sources[-1]

    with pytest.raises(EncoderError, match="the mixer broke") as caught:
        export_on(2, monkeypatch, timeline, clips, out, source=failing)
    assert caught.value is sources[0].raised[0]
    assert len(encodes) == 1 and len(pids) == 2  # it failed encoding in parts
    if previous is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if previous is None else ["two.mp3"])
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # stopped and reaped
            os.kill(pid, 0)
    assert ffmpeg_children() == []
    assert not [t for t in threading.enumerate() if "feed_caught" in t.name]


class LaggingTrack:
    """A track whose parts further in are read only once the first part has been read whole."""

    def __init__(self, track):
        self.track = track
        self.first_read = threading.Event()

    def read(self, start: int = 0, stop: int | None = None):
        if start > 0:
            assert self.first_read.wait(timeout=60)
        yield from self.track.read(start, stop)
        if start == 0:
            self.first_read.set()


@needs_ffmpeg
def test_an_export_waits_for_its_last_part(material, one_part, tmp_path, monkeypatch, encodes):
    timeline, clips = material
    out = export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3", source=LaggingTrack)
    assert [c.returned for c in encodes] == [True]
    ours = decode(out)
    assert len(ours) == total_samples(timeline)
    upto = first_join_sample(encodes[0].parts)
    np.testing.assert_array_equal(ours[:upto], one_part.decoded[:upto])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.mp3"]


class ShortTrack:
    """A track whose parts further in come a chunk short."""

    def __init__(self, track):
        self.track = track

    def read(self, start: int = 0, stop: int | None = None):
        chunks = list(self.track.read(start, stop))
        yield from chunks[:-1] if start > 0 else chunks


@needs_ffmpeg
def test_a_part_short_of_samples_is_an_error(material, tmp_path, monkeypatch, encodes):
    timeline, clips = material
    with pytest.raises(EncoderError, match="part 2 of the track has"):
        export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3", source=ShortTrack)
    assert len(encodes) == 1
    assert_nothing_left(tmp_path)


@needs_ffmpeg
def test_ctrl_c_in_a_parts_thread_stops_the_export(material, tmp_path, monkeypatch, encodes):
    timeline, clips = material
    main = threading.current_thread()

    def interrupt(done, total):
        if threading.current_thread() is not main and done > total // 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3", on_progress=interrupt)
    assert len(encodes) == 1
    assert_nothing_left(tmp_path)


@needs_ffmpeg
def test_progress_of_a_parallel_export_rises_to_the_end(material, tmp_path, monkeypatch, encodes):
    timeline, clips = material
    total = total_samples(timeline)
    calls, threads = [], set()

    def progress(done, of):
        calls.append((done, of))
        threads.add(threading.get_ident())

    export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3", on_progress=progress)
    assert [c.returned for c in encodes] == [True]
    assert len(threads) == 2  # both parts reported
    assert len(calls) > 10
    assert {of for _, of in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and 0 < done[0] and done[-1] <= total
    assert calls[-1] == (total, total)


def test_a_full_disk_while_splicing_is_an_encoder_error(material, tmp_path, monkeypatch, encodes):
    timeline, clips = material

    def full(parts, joins, reach):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(parallel.mp3frames, "splice", full)
    with pytest.raises(EncoderError, match="No space left on device") as caught:
        export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3")
    assert ".part" not in str(caught.value)  # named by its final name, not the temporary one
    assert_nothing_left(tmp_path)


@needs_ffmpeg
def test_a_failing_part_is_named_by_the_file_the_user_asked_for(material, tmp_path, monkeypatch,
                                                                 encodes):
    timeline, clips = material

    real = parallel.Mp3Sink

    class Failing(real):
        def write(self, pcm):  # as ffmpeg's failure reads: it names the file it wrote
            raise EncoderError(f"ffmpeg could not encode {self.path.name}: broken")

    made: list[Path] = []

    def sink(path, kbps, **options):  # the second part's encoder fails
        made.append(path)
        return (Failing if len(made) == 2 else real)(path, kbps, **options)

    monkeypatch.setattr(parallel, "Mp3Sink", sink)
    with pytest.raises(EncoderError) as caught:
        export_on(2, monkeypatch, timeline, clips, tmp_path / "two.mp3")
    assert str(caught.value) == "ffmpeg could not encode two.mp3 (part 2): broken"
    assert_nothing_left(tmp_path)


def test_every_reader_of_a_track_whose_levels_fail_gets_the_error_once(material, monkeypatch):
    timeline, clips = material
    calls = []

    def failing(*args, **kwargs):
        calls.append(threading.current_thread().name)
        raise EncoderError("no levels")

    monkeypatch.setattr("voiceflex.audio.levels.stream_levels", failing)
    track = make_track(timeline, clips)
    errors = []

    def read(start):
        try:
            next(track.read(start))
        except EncoderError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=read, args=(s,)) for s in (0, RATE * 60, RATE * 120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["no levels"] * 3
    assert len(calls) == 1  # planned once, not again by each reader
