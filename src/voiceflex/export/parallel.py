"""One MP3 encoded in parts, a LAME per core, cut where the track is silent and spliced frame-exactly.

LAME runs on one core and is most of an export's time (2.2 s of a
30-minute routine's ~2.6 s here), so a long enough export is cut into
parts, one per core: each part has its own ffmpeg, fed by its own mixer
thread reading the same level plan, and their frames are then spliced into
one stream (mp3frames.splice).  A cut goes in the middle of a stretch where
nothing sounds (the timeline says where; the mixer's output there is exactly
zero), on the 576-sample frame grid an encode of the whole track would use.
Both parts around it encode MARGIN of that silence past the join, so the
frames at the join carry no sound and the result decodes, sample for sample,
to the parts' own decodings (measured: the same samples as one LAME's
stream up to where its bit-allocation history differs, the same SNR against
the track, the same length).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from voiceflex.audio.mixer import total_samples
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.errors import EncoderError
from voiceflex.export import mp3frames
from voiceflex.export.atomic import temp_name
from voiceflex.export.encoder import Mp3Sink
from voiceflex.timeline import Timeline

FRAME = mp3frames.SAMPLES_PER_FRAME
# LAME's encoder delay (576) and the decoder's (529): frame f of the stream
# decodes to track samples from 576 f - CODEC_DELAY on.
CODEC_DELAY = 1105
MARGIN = ms_to_samples(200)  # silence each part encodes past a join
SILENCE = ms_to_samples(600)  # the shortest stretch of silence a cut goes in
EDGE = ms_to_samples(10)  # kept clear of every sound's ends (rounding of their lengths)
MIN_PART = ms_to_samples(60_000)  # shorter parts are not worth an encoder's start-up
MAX_PARTS = 4


class Source(Protocol):
    """The track (audio.track.Track): int16 chunks of any span, read from any thread."""

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class Part:
    """Track samples [start, stop) encoded apart; its frames [first, last) go into the stream."""

    start: int  # a multiple of FRAME: the part's frames lie on the whole track's grid
    stop: int
    first: int
    last: int | None  # None: to its end


def plan(timeline: Timeline, cores: int) -> list[Part]:
    """How to encode `timeline`'s track on `cores` cores: its parts, or [] for one encoder."""
    total = total_samples(timeline)
    middles = [(a + b) // 2 for a, b in _silences(timeline, total)]
    joins: list[int] = []
    # As many parts as there are cores, or fewer where silences do not fall near their ends.
    for count in range(min(cores, MAX_PARTS, total // MIN_PART), 1, -1):
        found = _joins(middles, total, count)
        if len(found) > len(joins):
            joins = found
        if len(joins) == count - 1:
            break
    if not joins:
        return []
    starts = [0] + [(join * FRAME - CODEC_DELAY - MARGIN) // FRAME * FRAME for join in joins]
    stops = [join * FRAME - CODEC_DELAY + MARGIN for join in joins] + [total]
    bounds = [0, *joins, None]
    return [Part(start, stop, bounds[i] - start // FRAME if i else 0,
                 None if bounds[i + 1] is None else bounds[i + 1] - start // FRAME)
            for i, (start, stop) in enumerate(zip(starts, stops, strict=True))]


def _joins(middles: list[int], total: int, count: int) -> list[int]:
    """The first frame of each part after the first, for `count` parts of about equal length."""
    joins: list[int] = []
    for i in range(1, count):
        aim = total * i // count
        best = min(middles, key=lambda m: abs(m - aim), default=None)
        if best is None or abs(best - aim) > total // count // 4:
            continue  # no silence near enough: one part fewer
        join = round((best + CODEC_DELAY) / FRAME)
        if joins and (join - joins[-1]) * FRAME < MIN_PART:
            continue
        joins.append(join)
    return joins


def _silences(timeline: Timeline, total: int) -> list[tuple[int, int]]:
    """Stretches of the track at least SILENCE long where nothing sounds, EDGE clear of each sound."""
    sounding = sorted((max(0, ms_to_samples(e.start_ms) - EDGE), ms_to_samples(e.end_ms) + EDGE)
                      for e in timeline.events)
    gaps, quiet_from = [], 0
    for start, end in sounding:
        if start - quiet_from >= SILENCE:
            gaps.append((quiet_from, start))
        quiet_from = max(quiet_from, end)
    if total - quiet_from >= SILENCE:
        gaps.append((quiet_from, total))
    return gaps


def encode(track: Source, parts: Sequence[Part], path: Path, kbps: int,
           on_progress: Callable[[int, int], None] | None = None,
           on_start: Callable[[], None] | None = None) -> bool:
    """Encode the parts at once and splice them into `path`; False if the frames would not join.

    On False (a join found not silent: mp3frames' checks) `path` holds
    nothing of use and the caller encodes the track in one part.  On any
    error every encoder is stopped and only `path` (the caller's temporary
    file) may be left.
    """
    paths = [path] + [temp_name(path) for _ in parts[1:]]
    sinks: list[Mp3Sink] = []
    progress = _Progress(sum(p.stop - p.start for p in parts), parts[-1].stop, on_progress)
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    try:
        for p, part in zip(paths, parts, strict=True):
            sinks.append(Mp3Sink(p, kbps, seconds=(part.stop - part.start) / RATE))

        def feed(i: int) -> None:
            done = 0
            for chunk in track.read(parts[i].start, parts[i].stop):
                if failures:  # another part failed: stop here, the caller's thread raises it
                    return
                sinks[i].write(chunk)
                if not done and on_start is not None and i == 0:
                    on_start()
                done += len(chunk)
                progress.add(len(chunk))
            if done != parts[i].stop - parts[i].start:
                raise EncoderError(f"part {i + 1} of the track has {done} samples, "
                                   f"not {parts[i].stop - parts[i].start}")

        def feed_caught(i: int) -> None:
            try:
                feed(i)
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                failures.append(e)

        threads = [threading.Thread(target=feed_caught, args=(i,), daemon=True)
                   for i in range(1, len(parts))]
        for thread in threads:
            thread.start()
        feed(0)
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        for sink in sinks:
            sink.close()
        try:
            mp3frames.splice([mp3frames.Part(p, part.first, part.last)
                              for p, part in zip(paths, parts, strict=True)])
        except mp3frames.SpliceError:
            return False
        except OSError as e:  # a full disk, a file size limit
            raise EncoderError(f"could not write {path}: {e.strerror or e}") from None
        return True
    except BaseException as exc:
        for sink in sinks:
            sink.abort()  # the feeding threads' next write fails: they end
        for thread in threads:
            thread.join(timeout=10)
        if isinstance(exc, EncoderError):
            raise _named(exc, paths) from None
        raise
    finally:
        for extra in paths[1:]:
            with contextlib.suppress(OSError):
                os.unlink(extra)


def _named(error: EncoderError, paths: Sequence[Path]) -> EncoderError:
    """`error` naming a part's own file as that part of the first one (which the caller names)."""
    message = str(error)
    for number, extra in enumerate(paths[1:], start=2):
        message = message.replace(extra.name, f"{paths[0].name} (part {number})")
    return error if message == str(error) else EncoderError(message, hint=error.hint)


class _Progress:
    """Samples encoded over all parts, reported as a share of the track's length, from any thread."""

    def __init__(self, fed: int, total: int, report: Callable[[int, int], None] | None):
        self.fed, self.total, self.report = fed, total, report
        self.done = 0
        self._lock = threading.Lock()

    def add(self, samples: int) -> None:
        if self.report is None:
            return
        with self._lock:
            self.done += samples
            self.report(self.done * self.total // self.fed, self.total)
