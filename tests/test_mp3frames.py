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


def sound_all_through() -> np.ndarray:
    """20 s never silent: a soft chord over noise (a sound bed), with a spoken-like burst every 0.8 s."""
    rng = np.random.default_rng(1)
    t = np.arange(20 * RATE) / RATE
    x = 600 * np.sin(2 * np.pi * 220 * t) + 400 * np.sin(2 * np.pi * 277.2 * t) + 300 * rng.standard_normal(len(t))
    bursts = (np.sin(2 * np.pi * t / 0.8) > 0.3) * (3000 * np.sin(2 * np.pi * 440 * t)
                                                     + 1500 * np.sin(2 * np.pi * 1234 * t))
    return np.round(x + bursts).astype(np.int16)


def encode(path: Path, pcm: np.ndarray, kbps: int = KBPS) -> Path:
    sink = Mp3Sink(path, kbps)
    sink.write(pcm)
    sink.close()
    return path


def two_parts(folder: Path, signal: np.ndarray, join: int, kbps: int = KBPS) -> list[mp3frames.Part]:
    """The signal encoded as parallel.plan cuts it around frame `join`: the parts splice takes."""
    stop = (join + parallel.REACH) * FRAME - parallel.CODEC_DELAY + parallel.MARGIN
    start = (join - parallel.WARM) * FRAME
    return [mp3frames.Part(encode(folder / "part0.mp3", signal[:stop], kbps), 0),
            mp3frames.Part(encode(folder / "part1.mp3", signal[start:], kbps), start // FRAME)]


def info_frame(data: bytes) -> bytes:
    kbps = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)[data[2] >> 4]
    return data[:72_000 * kbps // RATE + (data[2] >> 1 & 1)]


def frames_of(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of each audio frame of an MP3 as ffmpeg writes it (no ID3 tag)."""
    return frames_of_bytes(path.read_bytes())


def frames_of_bytes(data: bytes) -> list[tuple[int, int]]:
    at, out = len(info_frame(data)), []
    while at < len(data):
        size = len(info_frame(data[at:at + 4] + bytes(1000)))
        out.append((at, size))
        at += size
    return out


def decode(path: Path, strict: bool = False) -> np.ndarray:
    """The samples ffmpeg decodes; `strict`: any damage it notices (a missing bit reservoir) fails."""
    checks = ["-err_detect", "crccheck+bitstream+buffer+explode"] if strict else []
    run = subprocess.run(["ffmpeg", "-v", "error", *checks, "-i", str(path), "-f", "s16le", "-"],
                         capture_output=True, check=True)
    assert not strict or run.stderr == b"", run.stderr.decode(errors="replace")
    return np.frombuffer(run.stdout, dtype="<i2")


def snr_db(signal: np.ndarray, decoded: np.ndarray) -> float:
    x, y = signal.astype(float), decoded.astype(float)
    # LAME decodes ~0.45 dB quieter (encoder.py): fit the level, so this measures the coding.
    noise = x - (x @ y) / (y @ y) * y
    return 10 * np.log10((x @ x) / (noise @ noise))


@pytest.fixture(scope="module")
def spliced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("splice")
    signal = sound_all_through()
    reference = encode(folder / "reference.mp3", signal)
    near = round((len(signal) // 2 + parallel.CODEC_DELAY) / FRAME)
    parts = two_parts(folder, signal, near)
    pristine = folder / "pristine"
    pristine.mkdir()
    for part in parts:
        shutil.copy(part.path, pristine / part.path.name)
    (join,) = mp3frames.splice(parts, [near], parallel.REACH)
    kept = [mp3frames.Part(pristine / p.path.name, p.offset) for p in parts]
    return SimpleNamespace(signal=signal, reference=reference, path=parts[0].path, near=near,
                           join=join, parts=kept)


@needs_ffmpeg
def test_spliced_file_decodes_to_the_signals_length_without_a_fault(spliced):
    assert spliced.near <= spliced.join <= spliced.near + parallel.REACH
    assert len(decode(spliced.path, strict=True)) == len(spliced.signal)
    # Another decoder than ffmpeg's, as many players use, reads it without a complaint.
    run = subprocess.run(["mpg123", "-q", "-s", str(spliced.path)], capture_output=True, check=True)
    assert run.stderr == b""
    assert len(run.stdout) == 2 * len(spliced.signal)


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
    np.testing.assert_array_equal(ours[:upto], theirs[:upto])  # LAME is deterministic
    assert not np.array_equal(ours[upto:upto + FRAME], theirs[upto:upto + FRAME])  # the other part's
    # Around the join (where a seam would be) and after it, the coding is as good as one encode's.
    for a, b in ((upto - RATE // 4, upto + RATE // 4), (upto, len(ours))):
        assert snr_db(spliced.signal[a:b], ours[a:b]) == pytest.approx(
            snr_db(spliced.signal[a:b], theirs[a:b]), abs=1.5)


@needs_ffmpeg
def test_the_later_parts_bit_reservoir_is_moved_over_the_join(spliced, tmp_path, monkeypatch):
    # The second part's frame at the join begins its data in the bytes before
    # it, which the splice writes where the first part left them free...
    first = frames_of(spliced.parts[1].path)[spliced.join - spliced.parts[1].offset]
    back = spliced.parts[1].path.read_bytes()[first[0] + 4]  # main_data_begin: the side info's first byte
    assert back > 0
    # ...without which that frame decodes from the first part's bytes: noise at
    # the join (measured: 3 dB SNR over its 576 samples, against 15 dB).
    parts = copies(tmp_path, spliced.parts)
    monkeypatch.setattr(mp3frames, "_relocation", lambda a, af, b, bf, join: (af[join - a.offset], b""))
    mp3frames.splice(parts, [spliced.join])
    at = spliced.join * FRAME - parallel.CODEC_DELAY
    frame = slice(at, at + FRAME)
    moved, left = decode(spliced.path)[frame], decode(parts[0].path)[frame]
    assert snr_db(spliced.signal[frame], left) < snr_db(spliced.signal[frame], moved) - 6


@needs_ffmpeg
def test_a_reservoir_over_several_frames_is_moved_around_their_headers(tmp_path):
    # At 32 kbit/s a frame holds 91 bytes of main data, so the second part's
    # reservoir at the join runs back over more than one frame: the copy
    # must skip the headers and side info in between.
    signal = sound_all_through()
    near = round((len(signal) // 2 + parallel.CODEC_DELAY) / FRAME)
    parts = two_parts(tmp_path, signal, near, kbps=32)
    pristine = [p.path.read_bytes() for p in parts]
    frames = frames_of_bytes(pristine[1])

    def reaches_back(k: int) -> bool:  # past the payload of the frame before (header 4, side info 9)
        return pristine[1][frames[k - parts[1].offset][0] + 4] > frames[k - parts[1].offset - 1][1] - 13

    # The first frame on from the join asked for whose reservoir reaches that far back.
    join = next(k for k in range(near, near + parallel.REACH + 1) if reaches_back(k))
    assert mp3frames.splice(parts, [join]) == [join]
    reference = encode(tmp_path / "reference.mp3", signal, 32)
    ours, theirs = decode(parts[0].path, strict=True), decode(reference)
    upto = join * FRAME - parallel.CODEC_DELAY
    np.testing.assert_array_equal(ours[:upto], theirs[:upto])
    window = slice(upto - RATE // 4, upto + RATE // 4)
    assert snr_db(signal[window], ours[window]) == pytest.approx(snr_db(signal[window], theirs[window]), abs=1.5)


@needs_ffmpeg
def test_a_reservoir_fits_to_the_byte(tmp_path, spliced):
    # The first part's frame at the join said to leave exactly the bytes the
    # second part's reservoir needs: it fits; one byte fewer: it does not.
    k = spliced.join
    back = spliced.parts[1].path.read_bytes()[frames_of(spliced.parts[1].path)[k - spliced.parts[1].offset][0] + 4]
    for free, fits in ((back, True), (back - 1, False)):
        folder = tmp_path / str(free)
        folder.mkdir()
        parts = copies(folder, spliced.parts)
        rewrite_side_info(parts[0], range(k, k + 1), lambda bits: bits & ~(0xFF << 64) | free << 64)
        if fits:
            assert mp3frames.splice(parts, [k]) == [k]
        else:
            with pytest.raises(SpliceError, match="bit reservoir"):
                mp3frames.splice(parts, [k])


# --- refusals ---------------------------------------------------------------------------------


def snapshot(parts: list[mp3frames.Part]) -> list[bytes]:
    return [p.path.read_bytes() for p in parts]


def copies(folder: Path, parts: list[mp3frames.Part]) -> list[mp3frames.Part]:
    return [mp3frames.Part(Path(shutil.copy(p.path, folder / p.path.name)), p.offset) for p in parts]


def rewrite_side_info(part: mp3frames.Part, frames: range, change) -> None:
    """Apply change(72-bit side info) -> side info to the part's frames (on the stream's grid)."""
    data = bytearray(part.path.read_bytes())
    where = frames_of(part.path)
    for k in frames:
        at = where[k - part.offset][0] + 4
        bits = change(int.from_bytes(data[at:at + 9], "big"))
        data[at:at + 9] = bits.to_bytes(9, "big")
    part.path.write_bytes(bytes(data))


WINDOW_SWITCHING = 1 << 24  # the side info's window_switching_flag; block_type is the 2 bits below it


@needs_ffmpeg
@pytest.mark.parametrize("which, change, reason", [
    # The second part said to switch to short windows where the first did not.
    (1, lambda bits: bits | WINDOW_SWITCHING | 2 << 22, "different windows"),
    # The first part said to leave no byte free before its frames (main_data_begin 0),
    # where the second part's frames reach back into a reservoir.
    (0, lambda bits: bits & ~(0xFF << 64), "bit reservoir"),
], ids=["windows", "reservoir"])
def test_a_join_where_the_parts_do_not_fit_is_refused(tmp_path, spliced, which, change, reason):
    parts = copies(tmp_path, spliced.parts)
    near, reach = spliced.near, parallel.REACH
    rewrite_side_info(parts[which], range(near - 1, near + reach + 1), change)
    before = snapshot(parts)
    with pytest.raises(SpliceError, match=reason):
        mp3frames.splice(parts, [near], reach)
    assert snapshot(parts) == before


@needs_ffmpeg
def test_a_join_moves_on_to_the_first_frame_that_fits(tmp_path, spliced):
    parts = copies(tmp_path, spliced.parts)
    near = spliced.join
    # The second part said to begin short windows at the frame asked for and
    # the next, where the first part's end long: the join moves on to the
    # first frame after them, and keeps neither.
    rewrite_side_info(parts[1], range(near, near + 2), lambda bits: bits | WINDOW_SWITCHING | 2 << 22)
    (tmp_path / "unmoved").mkdir()
    with pytest.raises(SpliceError, match="different windows"):
        mp3frames.splice(copies(tmp_path / "unmoved", parts), [near], 1)
    (made,) = mp3frames.splice(parts, [near], parallel.REACH)
    assert made == near + 2
    assert len(decode(parts[0].path, strict=True)) == len(spliced.signal)


@needs_ffmpeg
@pytest.mark.parametrize("which", [0, 1])
def test_a_part_that_is_not_an_mp3_is_refused(tmp_path, spliced, which):
    parts = copies(tmp_path, spliced.parts)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(np.random.default_rng(which).bytes(50_000))
    parts[which] = mp3frames.Part(junk, parts[which].offset)
    before = snapshot(parts)
    with pytest.raises(SpliceError):
        mp3frames.splice(parts, [spliced.near], parallel.REACH)
    assert snapshot(parts) == before


@needs_ffmpeg
@pytest.mark.parametrize("join", [
    lambda a, b: a + 1,  # after the first part's last frame: nothing there tells its free bytes
    lambda a, b: a + 50,  # past the first part's end
    lambda a, b: b,  # at the second part's first frame: nothing before it to overlap
    lambda a, b: b - 50,  # before the second part begins
], ids=["after-first-part", "past-first-part", "second-part-start", "before-second-part"])
def test_a_join_where_the_parts_do_not_overlap_is_refused(tmp_path, spliced, join):
    parts = copies(tmp_path, spliced.parts)
    last = parts[0].offset + len(frames_of(parts[0].path)) - 1
    at = join(last, parts[1].offset)
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="overlap"):
        mp3frames.splice(parts, [at], 0)
    assert snapshot(parts) == before


@needs_ffmpeg
@pytest.mark.parametrize("offsets, joins", [
    ((5, None), 1),  # the first part not from the stream's first frame
    ((0, None), 0),  # no join for two parts
    ((0, None), 2),  # two joins for two parts
], ids=["first-part-not-from-the-start", "too-few-joins", "too-many-joins"])
def test_parts_that_do_not_cover_the_track_are_refused(tmp_path, spliced, offsets, joins):
    parts = copies(tmp_path, spliced.parts)
    parts = [mp3frames.Part(p.path, p.offset if o is None else o) for p, o in zip(parts, offsets)]
    before = snapshot(parts)
    with pytest.raises(SpliceError, match="cover the track"):
        mp3frames.splice(parts, [spliced.near] * joins, parallel.REACH)
    assert snapshot(parts) == before
