"""LAME's MP3 frames: walk them, and splice parts encoded apart into the stream one LAME makes.

Parts encoded apart on the 576-sample grid, overlapping around each join, are
joined at a frame where their windows meet as one encoder's would and the bit
reservoir of the later part fits in the earlier one's; `splice` checks that on
the frames and never writes a doubtful join (docs/internals.md, "Splicing MP3 parts").
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SAMPLES_PER_FRAME = 576  # MPEG-2 layer III: one granule of 576 samples per frame
SAMPLE_RATE = 22050
# MPEG-2 layer III bitrates by header index, kbit/s.
_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SIDE_INFO = 9  # bytes, MPEG-2 mono
# Block types (0 long, 1 start, 2 short, 3 stop) by the half of their window
# that is short: a start window ends short, a stop window begins short.
_ENDS_SHORT = (1, 2)
_BEGINS_SHORT = (2, 3)
_TAG = 4 + _SIDE_INFO  # where "Info" starts in the Info frame
_LAME = _TAG + 120  # where the LAME extension starts (after flags, counts, TOC, quality)
_BLOCK = 1 << 20
# The largest end padding ffmpeg's muxer writes: one frame plus the decoder's delay (529).
_FFMPEG_MAX_PADDING = SAMPLES_PER_FRAME + 529


class SpliceError(Exception):
    """The parts cannot be joined without a seam (or are not the MP3s this module knows)."""


@dataclass(frozen=True)
class Info:
    """What a part's Info frame says."""

    size: int  # bytes of the Info frame itself
    frames: int  # audio frames after it
    delay: int  # encoder delay, samples
    padding: int  # samples added after the end
    music_crc: int  # CRC-16 of the audio frames


def read_info(path: Path, at: int = 0) -> Info:
    """The Info frame of the stream that starts at byte `at` of `path`."""
    with open(path, "rb") as f:
        f.seek(at)
        head = f.read(4)
        if len(head) < 4:
            raise SpliceError(f"{path.name} is not an MP3 stream")
        frame = head + f.read(_frame_size(head, 0) - 4)
    if len(frame) < _LAME + 36:
        raise SpliceError(f"{path.name} ends inside its Info frame")
    if frame[_TAG:_TAG + 4] not in (b"Info", b"Xing") or frame[_TAG + 7] & 0x0F != 0x0F:
        raise SpliceError(f"{path.name} has no Info frame with counts and a table of contents")
    if frame[_LAME:_LAME + 4] not in (b"LAME", b"Lavf", b"Lavc"):
        raise SpliceError(f"{path.name} has no LAME tag (its encoder delay would be lost)")
    pads = int.from_bytes(frame[_LAME + 21:_LAME + 24], "big")
    return Info(len(frame), int.from_bytes(frame[_TAG + 8:_TAG + 12], "big"), pads >> 12,
                pads & 0xFFF, int.from_bytes(frame[_LAME + 32:_LAME + 34], "big"))


def decoded_samples(path: Path) -> int:
    """The samples the MP3 file `path` decodes to, from its Info frame and its frames.

    Checks, without decoding, that the file is what an encode writes: an
    optional ID3v2 tag, the Info frame, then exactly the frames it counts up
    to the end of the file.  Raises SpliceError otherwise.
    """
    with open(path, "rb") as f:
        head = f.read(10)
    start = 0
    if len(head) == 10 and head[:3] == b"ID3":
        size = 0
        for byte in head[6:10]:  # a "syncsafe" integer: 7 bits a byte
            size = size << 7 | (byte & 0x7F)
        start = 10 + size + (10 if head[5] & 0x10 else 0)  # the footer, when flagged
    info = read_info(path, start)
    offsets = _offsets(path, start + info.size, info.frames)
    if offsets[-1] != os.path.getsize(path):
        raise SpliceError(f"{path.name} does not end after its {info.frames} frames")
    return info.frames * SAMPLES_PER_FRAME - info.delay - info.padding


@dataclass(frozen=True)
class Part:
    """One part's file, and the frame of the whole stream that its first audio frame is."""

    path: Path
    offset: int


def splice(parts: Sequence[Part], joins: Sequence[int], reach: int = 0) -> list[int]:
    """Make the first part's file the whole stream: part i's frames from joins[i-1] up to joins[i].

    Frames are counted on the whole stream's grid.  Each join moves on to the
    first frame, at most `reach` after the one asked, where the two parts can
    join (_fault); the joins made are returned.  The other parts'
    files are left for the caller to remove.  Raises SpliceError, before
    changing any file, if a join cannot be made.
    """
    if not parts or parts[0].offset != 0 or len(joins) != len(parts) - 1:
        raise SpliceError("the parts must cover the track from its first frame to its last")
    infos = [read_info(p.path) for p in parts]
    if any(info.delay != infos[0].delay for info in infos):
        raise SpliceError("the parts were encoded with different encoder delays")
    offsets = [_offsets(p.path, info.size, info.frames) for p, info in zip(parts, infos, strict=True)]
    for part, info, frames in zip(parts, infos, offsets, strict=True):
        if frames[-1] != os.path.getsize(part.path):
            raise SpliceError(f"{part.path.name} does not end after its {info.frames} frames")
    made: list[int] = []
    patches: list[list[tuple[int, bytes]]] = [[] for _ in parts]  # per part: (file offset, new bytes)
    for i, near in enumerate(joins):
        a, b = parts[i], parts[i + 1]
        faults = []
        for join in range(near, near + reach + 1):
            faults.append(_fault(a, offsets[i], b, offsets[i + 1], join))
            if faults[-1] is None:
                break
        else:
            raise SpliceError(f"{b.path.name} cannot follow {a.path.name} at frame {near}: {faults[0]}")
        if made and join <= made[-1]:
            raise SpliceError("the joins must follow each other")
        made.append(join)
        patches[i].append(_relocation(a, offsets[i], b, offsets[i + 1], join))
    bounds = [0, *made, parts[-1].offset + infos[-1].frames]
    spans = [(frames[lo - p.offset], frames[hi - p.offset])
             for p, frames, lo, hi in zip(parts, offsets, bounds[:-1], bounds[1:], strict=True)]

    crc = 0
    for part, info, (first, stop), patch in zip(parts, infos, spans, patches, strict=True):
        kept = _kept_crc(part.path, info.music_crc, info.size, (first, stop), os.path.getsize(part.path))
        for at, new in patch:  # CRC-16 is linear: the changed bytes XOR their difference in
            diff = bytes(x ^ y for x, y in zip(_read(part.path, at, at + len(new)), new, strict=True))
            kept ^= _advance(crc16(diff), stop - at - len(new))
        crc = _advance(crc, stop - first) ^ kept
    music = sum(stop - first for first, stop in spans)
    with open(parts[0].path, "rb") as f:
        frame = bytearray(f.read(infos[0].size))
    size = infos[0].size + music
    frame[_TAG:_TAG + 4] = b"Info"
    frame[_TAG + 8:_TAG + 12] = (bounds[-1]).to_bytes(4, "big")
    frame[_TAG + 12:_TAG + 16] = size.to_bytes(4, "big")
    # Constant bitrate: bytes grow with time, so the seek table is a straight line.
    frame[_TAG + 16:_TAG + 116] = bytes(256 * i // 100 for i in range(100))
    pads = infos[0].delay << 12 | infos[-1].padding
    frame[_LAME + 21:_LAME + 24] = pads.to_bytes(3, "big")
    frame[_LAME + 28:_LAME + 32] = size.to_bytes(4, "big")
    frame[_LAME + 32:_LAME + 34] = crc.to_bytes(2, "big")
    _seal(frame)

    with open(parts[0].path, "r+b") as out:
        out.truncate(spans[0][1])
        base = 0  # where the current part's kept bytes begin in `out`, less their place in the part
        for i, (part, (first, stop)) in enumerate(zip(parts, spans, strict=True)):
            if i:
                base = out.seek(0, os.SEEK_END) - first
                with open(part.path, "rb") as src:
                    src.seek(first)
                    _copy(src, out, stop - first)
            for at, new in patches[i]:
                out.seek(base + at)
                out.write(new)
        out.seek(0)
        out.write(frame)
    return made


def _fault(a: Part, a_frames: array, b: Part, b_frames: array, join: int) -> str | None:
    """Why `b`'s frames from `join` on cannot follow `a`'s frames before it, or None if they can.

    Both parts encoded the same track samples around the join, so b's frame
    there is a's own but for its quantisation.  Two things join two streams:
    the decoder overlaps each frame's window with the one before, and their
    aliasing cancels only where a's last window ends with the half that b's
    first one begins with (long or short); and b's frame may begin its main
    data up to 255 bytes back (the bit reservoir), which must fit in the bytes
    a's frame `join` leaves free.
    """
    ka, kb = join - a.offset, join - b.offset
    if not (0 < ka < len(a_frames) - 1 and 0 < kb < len(b_frames) - 1):
        return "the parts do not overlap there"
    a_last = _side(_read_frame(a.path, a_frames, ka - 1))[2]
    a_free = _side(_read_frame(a.path, a_frames, ka))[0]
    b_back, _, b_first = _side(_read_frame(b.path, b_frames, kb))
    if (a_last in _ENDS_SHORT) != (b_first in _BEGINS_SHORT):
        return "the parts chose different windows there"
    if b_back > a_free:
        return "its bit reservoir does not fit"
    return None


def _relocation(a: Part, a_frames: array, b: Part, b_frames: array, join: int) -> tuple[int, bytes]:
    """(offset in a, bytes): b's bit reservoir before frame `join`, written where a leaves it free.

    Main data runs on over the frames' payloads (each frame less its header
    and side info).  The reservoir a's frame `join` would begin in holds no
    data of a's earlier frames, and b's fits in it (_fault).
    """
    count = _side(_read_frame(b.path, b_frames, join - b.offset))[0]
    into = _payload_before(a_frames, join - a.offset, count)
    taken = b"".join(_read(b.path, lo, hi) for lo, hi in _payload_before(b_frames, join - b.offset, count))
    start, end = (into[0][0], into[-1][1]) if into else (a_frames[join - a.offset],) * 2
    new = bytearray(_read(a.path, start, end))
    at = 0
    for lo, hi in into:  # the headers in between stay as they are
        new[lo - start:hi - start] = taken[at:at + hi - lo]
        at += hi - lo
    return start, bytes(new)


def _payload_before(frames: array, frame: int, count: int) -> list[tuple[int, int]]:
    """The byte ranges of the `count` payload bytes before `frame`'s header, in file order."""
    ranges: list[tuple[int, int]] = []
    while count > 0:
        frame -= 1
        if frame < 0:
            raise SpliceError("a frame takes its bit reservoir from before the stream")
        lo, hi = frames[frame] + 4 + _SIDE_INFO, frames[frame + 1]
        take = min(count, hi - lo)
        ranges.append((hi - take, hi))
        count -= take
    return ranges[::-1]


def _read_frame(path: Path, frames: array, index: int) -> bytes:
    return _read(path, frames[index], frames[index + 1])


def _seal(frame: bytearray) -> None:
    """Set LAME's tag CRC, which covers the Info frame up to itself (what ffmpeg's reader checks)."""
    frame[_LAME + 34:_LAME + 36] = crc16(frame[:_LAME + 34]).to_bytes(2, "big")


def mend_padding(path: Path, samples: int) -> None:
    """Make the Info frame of ffmpeg's MP3 `path` say the `samples` it was fed, where ffmpeg cannot.

    LAME's padding after a track of n samples is 576 + 529 + (576 - n % 576)
    % 576 (its flush frame and the decoder's delay): up to 1151.  ffmpeg's
    muxer writes the padding from the last packet's discarded samples, at most
    one frame, so it says 1105 where it should say 1106 to 1151 (n % 576 from
    46 down to 1) and the file decodes 1 to 46 samples too long.  Only that
    case is mended; any other mismatch is left for check_written to report.
    """
    try:
        info = read_info(path)
    except (SpliceError, OSError):
        return
    needed = info.frames * SAMPLES_PER_FRAME - info.delay - samples
    if info.padding != _FFMPEG_MAX_PADDING or not _FFMPEG_MAX_PADDING < needed < 2 * SAMPLES_PER_FRAME:
        return
    with open(path, "r+b") as f:
        frame = bytearray(f.read(info.size))
        frame[_LAME + 21:_LAME + 24] = (info.delay << 12 | needed).to_bytes(3, "big")
        _seal(frame)
        f.seek(0)
        f.write(frame)


# --- frames -------------------------------------------------------------------------------


def _frame_size(data: bytes | memoryview, at: int) -> int:
    """The size of the MPEG-2 layer III, 22.05 kHz, mono frame whose header is data[at:at+4]."""
    if len(data) < at + 4:
        raise SpliceError("a frame is cut short")
    b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
    # sync, MPEG-2, layer III, no CRC; 22.05 kHz; mono
    if data[at] != 0xFF or b1 != 0xF3 or (b2 >> 2) & 3 != 0 or b3 >> 6 != 3:
        raise SpliceError(f"not a 22.05 kHz mono MPEG-2 layer III frame at byte {at}")
    kbps = _KBPS[b2 >> 4] if b2 >> 4 < len(_KBPS) else 0
    if not kbps:
        raise SpliceError(f"a frame with no bitrate at byte {at}")
    return 72_000 * kbps // SAMPLE_RATE + ((b2 >> 1) & 1)


def _offsets(path: Path, start: int, count: int) -> array:
    """Byte offsets of the first `count` frames from `start`, and of the byte after them."""
    offsets = array("q")
    with open(path, "rb") as f:
        block, base, at = b"", start, 0  # `at` indexes `block`, which begins at file offset `base`
        while len(offsets) < count:
            if at + 4 > len(block):  # read on from the next frame's header
                base, at = base + at, 0
                f.seek(base)
                block = f.read(_BLOCK)
                if len(block) < 4:
                    raise SpliceError(f"{path.name} ends after {len(offsets)} of {count} frames")
            offsets.append(base + at)
            at += _frame_size(block, at)
        offsets.append(base + at)
    return offsets


def _side(frame: bytes) -> tuple[int, int, int]:
    """(main_data_begin, part2_3_length, block_type) of an MPEG-2 mono frame's one granule.

    The 72 bits of side info: main_data_begin 8, private 1, part2_3_length
    12, big_values 9, global_gain 8, scalefac_compress 9, then
    window_switching_flag 1 and, when it is set, block_type 2 (0: long).
    """
    bits = int.from_bytes(frame[4:4 + _SIDE_INFO], "big")
    block = bits >> 22 & 3 if bits >> 24 & 1 else 0
    return bits >> 64, bits >> 51 & 0xFFF, block


def _read(path: Path, begin: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(begin)
        return f.read(end - begin)


def _copy(src: BinaryIO, dst: BinaryIO, length: int) -> None:
    while length > 0:
        block = src.read(min(length, _BLOCK))
        if not block:
            raise SpliceError("a part ended early")
        dst.write(block)
        length -= len(block)


# --- CRC-16 (ARC: polynomial 0x8005 reflected, initial 0), as the LAME tag has it --------


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC = _table()
# Each table entry's high byte is different: it names the entry (for stepping back).
_BY_HIGH = {entry >> 8: byte for byte, entry in enumerate(_CRC)}


def crc16(data: bytes, crc: int = 0) -> int:
    for byte in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ byte) & 0xFF]
    return crc


def _advance(crc: int, count: int) -> int:
    """The CRC after `count` more zero bytes: crc(X + Y) == _advance(crc(X), len(Y)) ^ crc(Y).

    Zero bytes act on the register linearly, so this is a 16x16 bit matrix
    raised to the power `count` by squaring: a few thousand steps for any length.
    """
    step = [_CRC[(1 << bit) & 0xFF] ^ ((1 << bit) >> 8) for bit in range(16)]  # one zero byte
    while count:
        if count & 1:
            crc = _apply(step, crc)
        step = [_apply(step, column) for column in step]
        count >>= 1
    return crc


def _apply(matrix: list[int], vector: int) -> int:
    out = 0
    for bit in range(16):
        if vector >> bit & 1:
            out ^= matrix[bit]
    return out


def _retreat(crc: int, count: int) -> int:
    """The CRC `count` zero bytes earlier (undoes _advance), one byte at a time."""
    for _ in range(count):
        byte = _BY_HIGH[crc >> 8]
        crc = ((crc ^ _CRC[byte]) << 8 | byte) & 0xFFFF
    return crc


def _kept_crc(path: Path, whole: int, begin: int, kept: tuple[int, int], end: int) -> int:
    """CRC-16 of the bytes `kept` = [first, stop) of a part whose audio [begin, end) has CRC `whole`.

    With head = [begin, first), kept = [first, stop), tail = [stop, end):
    crc(whole) = adv(crc(head), |kept| + |tail|) ^ adv(crc(kept), |tail|) ^ crc(tail),
    and head and tail are a few frames each, read here.
    """
    first, stop = kept
    head, tail = _read(path, begin, first), _read(path, stop, end)
    return _retreat(whole ^ crc16(tail), len(tail)) ^ _advance(crc16(head), stop - first)
