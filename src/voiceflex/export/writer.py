"""Export a timeline: one MP3 or WAV file with tags and chapters, or a file per chapter."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from voiceflex.audio.mixer import total_samples
from voiceflex.audio.output_format import OutputFormat
from voiceflex.audio.rate import ms_to_samples
from voiceflex.errors import EncoderError
from voiceflex.export.atomic import prepare_folder, staged
from voiceflex.export.cover import cover_png
from voiceflex.export import manifest, parallel
from voiceflex.export.encoder import Sink, check_written, open_sink
from voiceflex.export.names import chapter_file_name, playlist_title
from voiceflex.export.parallel import Source
from voiceflex.export.tags import ALBUM, DEFAULT_ARTIST, Tags, write_tags
from voiceflex.timeline import Chapter, Timeline

Progress = Callable[[int, int], None]


class RoutineMeta(Protocol):
    """What export needs to know about the routine (a Routine has it all)."""

    title: str
    description: str | None
    author: str | None


def write(
    track: Source,
    timeline: Timeline,
    routine: RoutineMeta,
    path: Path,
    *,
    output: OutputFormat,
    on_progress: Progress | None = None,
) -> Path:
    """Write `track`, the samples of `timeline`, into `path` (MP3 with tags and chapters, or WAV); returns `path`.

    `track` (an audio.track.Track, levelled for `output`) is read only once the
    encoders are running, so they start up while the levels are planned.  A
    long MP3 is encoded in parts on all cores (parallel.py).  The file
    appears under
    `path` only once complete: on any failure (EncoderError,
    MissingComponentError, KeyboardInterrupt...) the previous file of that
    name is untouched and nothing else is left behind.  `on_progress(done,
    total)` is called in samples as the track is encoded.
    """
    fmt, kbps = output.format, output.kbps
    path = Path(path)
    prepare_folder(path.parent)
    cover = _Cover(routine.title, routine.author) if fmt == "mp3" else None
    total = total_samples(timeline)
    parts = parallel.plan(total, _cores()) if fmt == "mp3" else []
    with staged() as staging:
        temp = staging.path_for(path)
        if not (parts and parallel.encode(track, parts, temp, kbps, on_progress, cover.start)):
            _encode(track.read(0, total), total, _Segments([temp], [(0, total)], fmt, kbps),
                    on_progress, cover)
        if fmt == "mp3":
            write_tags(temp, Tags(
                title=routine.title, artist=routine.author or DEFAULT_ARTIST, album=ALBUM,
                comment=routine.description, cover_png=cover.png(),
                length_ms=timeline.duration_ms, chapters=timeline.chapters))
        check_written(temp, fmt, total)
    return path


def write_split(
    track: Source,
    timeline: Timeline,
    routine: RoutineMeta,
    folder: Path,
    *,
    output: OutputFormat,
    on_progress: Progress | None = None,
) -> Path:
    """One file per chapter in `folder` (01-set-up.mp3, ...) and an .m3u8 playlist, returned.

    The playlist, `folder/<folder name>.m3u8`, lists the files by relative
    name with #EXTINF lengths.  All chapters share one level plan, so they
    play at the same level; the routine as a whole measures -16 LUFS.  Files
    are written under temporary names and renamed together at the end (the
    playlist, then the manifest of what was written, last); chapter files a
    previous export wrote and this one does not are then removed.  Files
    voiceflex did not write are never replaced or removed (manifest.py).
    """
    fmt, kbps = output.format, output.kbps
    folder = Path(folder)
    chapters = _chapters(timeline)
    names = [chapter_file_name(i + 1, len(chapters), c.title, fmt) for i, c in enumerate(chapters)]
    playlist = folder / f"{folder.name}.m3u8"
    written = manifest.read(folder)
    manifest.check_folder(folder, [*names, playlist.name], written)
    prepare_folder(folder)
    cover = _Cover(routine.title, routine.author) if fmt == "mp3" else None
    with staged() as staging:
        temps = [staging.path_for(folder / name) for name in names]
        spans = [(ms_to_samples(c.start_ms), ms_to_samples(c.end_ms)) for c in chapters]
        spans[-1] = (spans[-1][0], total_samples(timeline))
        total = total_samples(timeline)
        _encode(track.read(0, total), total, _Segments(temps, spans, fmt, kbps), on_progress, cover)
        if fmt == "mp3":
            png = cover.png()
            for i, (temp, chapter) in enumerate(zip(temps, chapters, strict=True)):
                write_tags(temp, Tags(
                    title=chapter.title, artist=routine.author or DEFAULT_ARTIST,
                    album=routine.title, comment=routine.description, cover_png=png,
                    length_ms=chapter.end_ms - chapter.start_ms, track=(i + 1, len(chapters))))
        for temp, (lo, hi) in zip(temps, spans, strict=True):
            check_written(temp, fmt, hi - lo)
        playlist_temp = staging.path_for(playlist)
        _write_text(playlist_temp, _m3u8(chapters, names))
        finals = {**dict(zip(names, temps, strict=True)), playlist.name: playlist_temp}
        _write_text(staging.path_for(folder / manifest.NAME), manifest.content(folder, finals))
    for stale in set(written) - set(finals):  # only what an export wrote, and still as written
        if manifest.ours(folder, stale, written):
            with contextlib.suppress(OSError):
                os.unlink(folder / stale)
    return playlist


# --- rendering into sinks ------------------------------------------------------


def _cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _encode(pcm: Iterable[np.ndarray], total: int, segments: _Segments,
            on_progress: Progress | None, cover: _Cover | None = None) -> None:
    """Pour the track into the segments' sinks; on any failure abort them all."""
    try:
        segments.start()  # the encoder starts up before the first chunk is asked for
        done = 0
        for chunk in pcm:
            segments.pour(chunk, done)
            if cover is not None and not done:
                # Drawn once the encoder is busy, not while the first chunk is awaited.
                cover.start()
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
        if done != total:
            raise EncoderError(f"the track has {done} samples, its timeline {total}")
        segments.finish()
    except BaseException:
        segments.abort()
        raise


class _Segments:
    """Consecutive sample spans of the track, each encoded into its own file.

    The sink of the next span is opened when a span starts, so its encoder
    process is up before the audio reaches it.
    """

    def __init__(self, paths: Sequence[Path], spans: Sequence[tuple[int, int]], fmt: str,
                 kbps: int):
        self.paths = list(paths)
        self.spans = list(spans)
        self.fmt, self.kbps = fmt, kbps
        self.sinks: list[Sink | None] = [None] * len(self.paths)
        self.current = 0

    def start(self) -> None:
        self._open(0)
        self._open(1)

    def pour(self, pcm: np.ndarray, start: int) -> None:
        """Write `pcm` (starting at sample `start` of the track) into the span(s) it covers."""
        end = start + len(pcm)
        while self.current < len(self.spans):
            lo, hi = self.spans[self.current]
            a, b = max(start, lo), min(end, hi)
            if a < b:
                self._open(self.current).write(pcm[a - start:b - start])
            if end < hi:
                break
            self._close(self.current)  # this span is complete
            self.current += 1
            self._open(self.current + 1)

    def finish(self) -> None:
        for i in range(self.current, len(self.sinks)):
            self._open(i)
            self._close(i)

    def abort(self) -> None:
        for i, sink in enumerate(self.sinks):
            if sink is not None:
                self.sinks[i] = None
                sink.abort()

    def _open(self, i: int) -> Sink | None:
        if i >= len(self.sinks):
            return None
        if self.sinks[i] is None:
            lo, hi = self.spans[i]
            self.sinks[i] = open_sink(self.fmt, self.paths[i], self.kbps, hi - lo)
        return self.sinks[i]

    def _close(self, i: int) -> None:
        sink = self.sinks[i]
        if sink is not None:
            self.sinks[i] = None
            sink.close()


# --- chapters, playlist, cover ------------------------------------------------------


def _chapters(timeline: Timeline) -> list[Chapter]:
    chapters = [c for c in timeline.chapters if c.end_ms > c.start_ms]
    return chapters or [Chapter(timeline.title, 0, timeline.duration_ms)]


def _m3u8(chapters: Iterable[Chapter], names: Iterable[str]) -> str:
    lines = ["#EXTM3U"]
    for chapter, name in zip(chapters, names, strict=True):
        seconds = max(1, (chapter.end_ms - chapter.start_ms + 500) // 1000)
        lines += [f"#EXTINF:{seconds},{playlist_title(chapter.title)}", name]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise EncoderError(f"could not write {path.name}: {e.strerror or e}") from None


class _Cover:
    """The cover art, drawn in a thread (`start`) while the track is mixed and encoded."""

    def __init__(self, title: str, author: str | None):
        self._png: bytes | None = None
        self._thread = threading.Thread(target=self._draw, args=(title, author), daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def _draw(self, title: str, author: str | None) -> None:
        with contextlib.suppress(Exception):  # no cover is better than no export
            self._png = cover_png(title, author)

    def png(self) -> bytes | None:
        self.start()  # a track shorter than one chunk may end before it started
        self._thread.join()
        return self._png
