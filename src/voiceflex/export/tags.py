"""ID3v2.3 tags for exported MP3s: title, artist, album, comment, cover art and chapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voiceflex.errors import EncoderError
from voiceflex.timeline import Chapter

ALBUM = "voiceflex"
DEFAULT_ARTIST = "voiceflex"


@dataclass(frozen=True)
class Tags:
    """What goes into a file's ID3 tag."""

    title: str
    artist: str = DEFAULT_ARTIST
    album: str = ALBUM
    comment: str | None = None
    cover_png: bytes | None = None
    length_ms: int | None = None
    track: tuple[int, int] | None = None  # (number, of)
    chapters: Sequence[Chapter] = ()


def write_tags(path: Path, tags: Tags) -> None:
    """Write `tags` to the MP3 at `path` as ID3v2.3, replacing any tag it had.

    Chapters become one CHAP frame each (start and end in ms, the title as a
    TIT2 sub-frame) under a top-level, ordered CTOC listing them in order.
    mutagen stores frames sorted by size, and ffmpeg/ffprobe (like other
    readers) take CHAP frames in file order and ignore the CTOC, so the CHAP
    frames are then put in time order in the file as well.
    """
    from mutagen.id3 import (
        APIC,
        CHAP,
        COMM,
        CTOC,
        ID3,
        TALB,
        TIT2,
        TLEN,
        TPE1,
        TRCK,
        CTOCFlags,
        Encoding,
        PictureType,
    )

    utf16 = Encoding.UTF16  # ID3v2.3 has no UTF-8; UTF-16 carries any title
    id3 = ID3()
    id3.add(TIT2(encoding=utf16, text=[tags.title]))
    id3.add(TPE1(encoding=utf16, text=[tags.artist]))
    id3.add(TALB(encoding=utf16, text=[tags.album]))
    if tags.comment:
        id3.add(COMM(encoding=utf16, lang="eng", desc="", text=[tags.comment]))
    if tags.length_ms is not None:
        id3.add(TLEN(encoding=Encoding.LATIN1, text=[str(int(tags.length_ms))]))
    if tags.track is not None:
        id3.add(TRCK(encoding=Encoding.LATIN1, text=[f"{tags.track[0]}/{tags.track[1]}"]))
    if tags.cover_png:
        id3.add(APIC(encoding=utf16, mime="image/png", type=PictureType.COVER_FRONT,
                     desc="Cover", data=tags.cover_png))
    if tags.chapters:
        ids = [f"chp{i}" for i in range(len(tags.chapters))]
        id3.add(CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                     child_element_ids=ids,
                     sub_frames=[TIT2(encoding=utf16, text=["Chapters"])]))
        for element_id, chapter in zip(ids, tags.chapters, strict=True):
            id3.add(CHAP(element_id=element_id, start_time=int(chapter.start_ms),
                         end_time=int(chapter.end_ms),
                         start_offset=0xFFFFFFFF, end_offset=0xFFFFFFFF,
                         sub_frames=[TIT2(encoding=utf16, text=[chapter.title])]))
    from mutagen import MutagenError

    try:
        id3.save(str(path), v2_version=3)
        if tags.chapters:
            _chapters_in_time_order(path)
    except OSError as e:
        raise EncoderError(f"could not write the tags of {path.name}: {e.strerror or e}") from None
    except MutagenError as e:  # mutagen wraps the OSError of a full disk in its own error
        reason = getattr(e.__context__, "strerror", None) or str(e)
        raise EncoderError(f"could not write the tags of {path.name}: {reason}") from None


def _chapters_in_time_order(path: Path) -> None:
    """Rewrite the ID3v2.3 tag at the start of `path` with its CHAP frames sorted by start time.

    The frames' bytes are moved, never changed, and the tag keeps its size.
    A tag with unsynchronisation, an extended header or flagged (compressed,
    encrypted) CHAP frames is left as it is.
    """
    with open(path, "r+b") as f:
        header = f.read(10)
        if len(header) < 10 or header[:3] != b"ID3" or header[3] != 3 or header[5] & 0xC0:
            return
        size = 0
        for byte in header[6:10]:
            size = (size << 7) | (byte & 0x7F)
        body = f.read(size)
        frames, pos = [], 0
        while pos + 10 <= len(body) and body[pos:pos + 4] != b"\0\0\0\0":
            length = int.from_bytes(body[pos + 4:pos + 8], "big")
            frames.append(body[pos:pos + 10 + length])
            pos += 10 + length
        chapters = [frame for frame in frames if frame[:4] == b"CHAP"]
        if pos > len(body) or any(frame[8:10] != b"\0\0" for frame in chapters):
            return

        def start_ms(frame: bytes) -> int:
            at = frame.index(b"\0", 10) + 1  # after the element id
            return int.from_bytes(frame[at:at + 4], "big")

        ordered = [f for f in frames if f[:4] != b"CHAP"] + sorted(chapters, key=start_ms)
        f.seek(10)
        f.write(b"".join(ordered))
