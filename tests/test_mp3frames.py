"""export/mp3frames.py: CRC-16 arithmetic, a real splice of parts encoded apart, refusals."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voiceflex.audio.rate import RATE
from voiceflex.export import mp3frames, parallel
from voiceflex.export.encoder import Mp3Sink
from voiceflex.export.mp3frames import SpliceError, _advance, _kept_crc, _retreat, crc16

needs_ffmpeg = pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                  reason="needs ffmpeg and ffprobe")

FRAME = 576
KBPS = 64
# The Info frame of a 22.05 kHz mono file, laid out here apart from the module's
# own constants: header 4 + side info 9, then "Info", flags, frame count, byte
# count, TOC (100), quality; the LAME tag 120 bytes after "Info".
INFO_TAG = 13
FRAME_COUNT = INFO_TAG + 8
LAME_TAG = INFO_TAG + 120
MUSIC_CRC = LAME_TAG + 32
TAG_CRC = LAME_TAG + 34


def bitwise_crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# --- CRC-16 --------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2, 3, 16, 255, 1000])
def test_crc16_matches_a_bitwise_reference(length):
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert crc16(data) == bitwise_crc16(data)


def test_crc16_is_crc16_arc():
    assert crc16(b"123456789") == 0xBB3D  # the catalogue's check value


@pytest.mark.parametrize("x_len, y_len", [(0, 0), (0, 7), (7, 0), (1, 1), (13, 300), (300, 13),
                                          (4096, 65536), (5, 100_003), (100_001, 2)])
def test_advance_joins_the_crcs_of_two_pieces(x_len, y_len):
    rng = np.random.default_rng(x_len * 7 + y_len)
    x = rng.integers(0, 256, x_len, dtype=np.uint8).tobytes()
    y = rng.integers(0, 256, y_len, dtype=np.uint8).tobytes()
    assert _advance(crc16(x), len(y)) ^ crc16(y) == crc16(x + y)


@pytest.mark.parametrize("count", [0, 1, 2, 255, 256, 1000, 65_537])
def test_retreat_undoes_advance(count):
    rng = np.random.default_rng(count)
    for crc in [0, 1, 0xFFFF, *rng.integers(0, 1 << 16, 5).tolist()]:
        assert _retreat(_advance(crc, count), count) == crc
    data = rng.integers(0, 256, 50, dtype=np.uint8).tobytes()
    assert _retreat(crc16(data + bytes(count)), count) == crc16(data)


@pytest.mark.parametrize("head_len, kept_len, tail_len", [(0, 500, 0), (0, 500, 37), (41, 500, 0),
                                                          (417, 20_000, 2090), (1, 1, 1)])
def test_kept_crc_is_the_crc_of_the_middle(tmp_path, head_len, kept_len, tail_len):
    rng = np.random.default_rng(head_len + kept_len + tail_len)
    before, head, kept, tail, after = (rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                                       for n in (208, head_len, kept_len, tail_len, 99))
    path = tmp_path / "part.mp3"
    path.write_bytes(before + head + kept + tail + after)
    begin = len(before)
    first, stop = begin + head_len, begin + head_len + kept_len
    whole = crc16(head + kept + tail)
    assert _kept_crc(path, whole, begin, (first, stop), stop + tail_len) == crc16(kept)


# --- a real splice ----------------------------------------------------------------------------


def bursts_around_a_silence() -> np.ndarray:
    """20 s: a tone-and-noise burst, 1.8 s of digital silence, another burst."""
    rng = np.random.default_rng(1)
    t = np.arange(20 * RATE) / RATE
    x = np.zeros(len(t))
    for a, b in ((0.3, 9.0), (10.8, 19.7)):
        s = slice(int(a * RATE), int(b * RATE))
        x[s] = (3000 * np.sin(2 * np.pi * 440 * t[s]) + 2000 * np.sin(2 * np.pi * 1234 * t[s])
                + 500 * rng.standard_normal(s.stop - s.start))
    return np.round(x).astype(np.int16)


SILENCE = (int(9.0 * RATE), int(10.8 * RATE))


def encode(path: Path, pcm: np.ndarray) -> Path:
    sink = Mp3Sink(path, KBPS)
    sink.write(pcm)
    sink.close()
    return path


def two_parts(folder: Path, signal: np.ndarray, join: int) -> list[mp3frames.Part]:
    """The signal encoded as parallel.plan cuts it, at frame `join`: the parts splice takes."""
    start = (join * FRAME - parallel.CODEC_DELAY - parallel.MARGIN) // FRAME * FRAME
    parts = [parallel.Part(0, join * FRAME - parallel.CODEC_DELAY + parallel.MARGIN, 0, join),
             parallel.Part(start, len(signal), join - start // FRAME, None)]
    return [mp3frames.Part(encode(folder / f"part{i}.mp3", signal[p.start:p.stop]), p.first, p.last)
            for i, p in enumerate(parts)]


def join_frame(sample: int) -> int:
    return round((sample + parallel.CODEC_DELAY) / FRAME)


def info_frame(data: bytes) -> bytes:
    kbps = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)[data[2] >> 4]
    return data[:72_000 * kbps // RATE + (data[2] >> 1 & 1)]


def decode(path: Path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<i2")


def snr_db(signal: np.ndarray, decoded: np.ndarray) -> float:
    x, y = signal.astype(float), decoded.astype(float)
    # LAME decodes ~0.45 dB quieter (encoder.py): fit the level, so this measures the coding.
    noise = x - (x @ y) / (y @ y) * y
    return 10 * np.log10((x @ x) / (noise @ noise))


@pytest.fixture(scope="module")
def spliced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("splice")
    signal = bursts_around_a_silence()
    reference = encode(folder / "reference.mp3", signal)
    join = join_frame(sum(SILENCE) // 2)
    parts = two_parts(folder, signal, join)
    pristine = folder / "pristine"
    pristine.mkdir()
    for part in parts:
        shutil.copy(part.path, pristine / part.path.name)
    mp3frames.splice(parts)
    kept = [mp3frames.Part(pristine / p.path.name, p.first, p.stop) for p in parts]
    return SimpleNamespace(signal=signal, reference=reference, path=parts[0].path, join=join,
                           parts=kept)


@needs_ffmpeg
def test_spliced_file_decodes_to_the_signals_length(spliced):
    assert len(decode(spliced.path)) == len(spliced.signal)


@needs_ffmpeg
def test_spliced_info_frame_counts_the_frames_of_one_encode(spliced):
    ours = info_frame(spliced.path.read_bytes())
    theirs = info_frame(spliced.reference.read_bytes())
    assert ours[INFO_TAG:INFO_TAG + 4] == b"Info"
    assert ours[FRAME_COUNT:FRAME_COUNT + 4] == theirs[FRAME_COUNT:FRAME_COUNT + 4]


@needs_ffmpeg
def test_spliced_music_crc_covers_every_audio_frame(spliced):
    data = spliced.path.read_bytes()
    frame = info_frame(data)
    assert int.from_bytes(frame[MUSIC_CRC:MUSIC_CRC + 2], "big") == bitwise_crc16(data[len(frame):])


@needs_ffmpeg
def test_spliced_lame_tag_crc_checks(spliced):
    frame = info_frame(spliced.path.read_bytes())
    assert int.from_bytes(frame[TAG_CRC:TAG_CRC + 2], "big") == bitwise_crc16(frame[:TAG_CRC])
    # ffmpeg's reader exports the encoder tag only when the tag CRC checks.
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream_tags=encoder",
                            "-of", "default=nw=1", str(spliced.path)],
                           capture_output=True, text=True, check=True).stdout
    assert "TAG:encoder=" in probe


@needs_ffmpeg
def test_spliced_audio_is_one_encodes_up_to_the_join_and_as_good_after(spliced):
    ours, theirs = decode(spliced.path), decode(spliced.reference)
    upto = spliced.join * FRAME - parallel.CODEC_DELAY
    assert SILENCE[0] < upto < SILENCE[1]
    np.testing.assert_array_equal(ours[:upto], theirs[:upto])
    assert snr_db(spliced.signal, ours) == pytest.approx(snr_db(spliced.signal, theirs), abs=0.5)


# --- refusals ---------------------------------------------------------------------------------


def snapshot(parts: list[mp3frames.Part]) -> list[bytes]:
    return [p.path.read_bytes() for p in parts]


def copies(folder: Path, parts: list[mp3frames.Part]) -> list[mp3frames.Part]:
    return [mp3frames.Part(Path(shutil.copy(p.path, folder / p.path.name)), p.first, p.stop)
            for p in parts]


@needs_ffmpeg
def test_a_join_in_sound_is_refused(tmp_path, spliced):
    parts = two_parts(tmp_path, spliced.signal, join_frame(int(4.5 * RATE)))
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="carry sound"):
        mp3frames.splice(parts)
    assert snapshot(parts) == before


@needs_ffmpeg
def test_a_part_starting_where_it_borrows_bits_from_before_the_join_is_refused(tmp_path, spliced):
    first, second = copies(tmp_path, spliced.parts)
    data = second.path.read_bytes()
    # The second part's first frame with sound after the join: the silent frames
    # before it filled LAME's bit reservoir, and it draws on them.
    frames = mp3frames._frames(data[len(info_frame(data)):])
    onset = next(k for k in range(second.first, len(frames)) if mp3frames._side(frames[k])[1])
    assert not any(mp3frames._side(f)[1] for f in frames[onset - 2:onset])
    parts = [first, mp3frames.Part(second.path, onset, None)]
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="bit reservoir"):
        mp3frames.splice(parts)
    assert snapshot(parts) == before


@needs_ffmpeg
def test_a_part_starting_right_after_sound_is_refused(tmp_path, spliced):
    first, second = copies(tmp_path, spliced.parts)
    data = second.path.read_bytes()
    frames = mp3frames._frames(data[len(info_frame(data)):])
    # Just after the last burst: the frames kept are silent, the two before them
    # are not (the decoder would carry their overlap over the join).
    after = max(k for k, f in enumerate(frames) if mp3frames._side(f)[1]) + 1
    assert after < len(frames)
    parts = [first, mp3frames.Part(second.path, after, None)]
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="carry sound"):
        mp3frames.splice(parts)
    assert snapshot(parts) == before


@needs_ffmpeg
@pytest.mark.parametrize("which", [0, 1])
def test_a_part_that_is_not_an_mp3_is_refused(tmp_path, spliced, which):
    parts = copies(tmp_path, spliced.parts)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(which).bytes(50_000))
    parts[which] = mp3frames.Part(junk, parts[which].first, parts[which].stop)
    before = snapshot(parts)
    with pytest.raises(SpliceError):
        mp3frames.splice(parts)
    assert snapshot(parts) == before


@needs_ffmpeg
@pytest.mark.parametrize("ranges", [
    lambda a, b, join, first: [(0, a + 1), (first, None)],  # past the first part's end
    lambda a, b, join, first: [(0, join), (b, None)],  # nothing left of the second part
    lambda a, b, join, first: [(0, join), (b + 1, None)],
    lambda a, b, join, first: [(0, join), (-1, None)],
    lambda a, b, join, first: [(0, 0), (first, None)],
    lambda a, b, join, first: [(0, join), (first, first - 1)],
], ids=["stop-past-end", "first-at-end", "first-past-end", "negative-first", "empty", "backwards"])
def test_frame_ranges_out_of_bounds_are_refused(tmp_path, spliced, ranges):
    parts = copies(tmp_path, spliced.parts)
    counts = [int.from_bytes(info_frame(p.path.read_bytes())[FRAME_COUNT:FRAME_COUNT + 4], "big")
              for p in parts]
    wanted = ranges(*counts, spliced.join, parts[1].first)
    parts = [mp3frames.Part(p.path, *span) for p, span in zip(parts, wanted, strict=True)]
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="frames, not"):
        mp3frames.splice(parts)
    assert snapshot(parts) == before


@needs_ffmpeg
@pytest.mark.parametrize("ranges", [
    lambda join, first: [(5, join), (first, None)],  # the first part's first frames left out
    lambda join, first: [(0, None), (first, None)],  # a part before the last without an end
], ids=["first-part-not-from-its-start", "open-ended-part"])
def test_parts_that_do_not_cover_the_track_are_refused(tmp_path, spliced, ranges):
    parts = copies(tmp_path, spliced.parts)
    wanted = ranges(spliced.join, parts[1].first)
    parts = [mp3frames.Part(p.path, *span) for p, span in zip(parts, wanted, strict=True)]
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="cover the track"):
        mp3frames.splice(parts)
    assert snapshot(parts) == before
