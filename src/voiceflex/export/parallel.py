"""One MP3 encoded in parts, a LAME per core, overlapping at each join and spliced frame-exactly.

LAME runs on one core and is most of an export's time (2.2 s of a
30-minute routine's ~2.6 s here), so a long enough export is cut into
parts of equal length, one per core: each part has its own ffmpeg, fed by
its own mixer thread reading the same level plan, and their frames are then
spliced into one stream (mp3frames.splice).  Each part lies on the
576-sample frame grid an encode of the whole track would use; around a join
the parts overlap (the later one starts WARM frames early, the earlier one
runs MARGIN on), and the splice takes the first frame, up to REACH on, where
their frames fit together.  Cuts go anywhere: in speech, tones or a sound bed.
Measured on three 30-minute tracks (with a music bed, with rain, without a
bed), 8 joins each: all 24 made, 0 to 2 frames on; the spliced stream decodes
to one encode's samples up to the join and, in the half second around it, to
an SNR within 1 dB of one encode's (either way: another bit allocation).
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

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.errors import EncoderError
from voiceflex.export import mp3frames
from voiceflex.export.atomic import temp_name
from voiceflex.export.encoder import Mp3Sink

FRAME = mp3frames.SAMPLES_PER_FRAME
# LAME's encoder delay (576) and the decoder's (529): frame f of the stream
# decodes to track samples from 576 f - CODEC_DELAY on.
CODEC_DELAY = 1105
# A part after the first starts WARM frames before its join: enough for its
# frames from the join on to cover only the track (a frame's 576 samples and
# the 512 taps of the analysis filterbank before them), few enough that its
# bit reservoir, which starts empty, still fits in the one of the part before
# (mp3frames._fault).
WARM = 4
# How many frames on a join may move to one where the parts fit.
REACH = 8
# Track the part before a join encodes past the last frame the join may move
# to: LAME's look-ahead for its window choice, and more, so that its frames
# up to there are what one encoder would make.
MARGIN = ms_to_samples(300)
MIN_PART = ms_to_samples(60_000)  # shorter parts are not worth an encoder's start-up
MAX_PARTS = 4


class Source(Protocol):
    """The track (audio.track.Track): int16 chunks of any span, read from any thread."""

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class Part:
    """Track samples [start, stop) encoded apart; the stream takes its frames from about frame `join` on."""

    start: int  # a multiple of FRAME: the part's frames lie on the whole track's grid
    stop: int
    join: int  # the stream's frame where this part takes over (0 for the first), or up to REACH after


def plan(total: int, cores: int) -> list[Part]:
    """How to encode a track of `total` samples on `cores` cores: its parts, or [] for one encoder."""
    count = min(cores, MAX_PARTS, total // MIN_PART)
    if count < 2:
        return []
    joins = [round((total * i // count + CODEC_DELAY) / FRAME) for i in range(1, count)]
    starts = [0] + [(join - WARM) * FRAME for join in joins]
    stops = [(join + REACH) * FRAME - CODEC_DELAY + MARGIN for join in joins] + [total]
    return [Part(start, stop, join) for start, stop, join in zip(starts, stops, [0, *joins], strict=True)]


def encode(track: Source, parts: Sequence[Part], path: Path, kbps: int,
           on_progress: Callable[[int, int], None] | None = None,
           on_start: Callable[[], None] | None = None) -> bool:
    """Encode the parts at once and splice them into `path`; False if the frames would not join.

    On False (no frame near a join where the parts fit: mp3frames' checks)
    `path` holds nothing of use and the caller encodes the track in one part.  On any
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
            mp3frames.splice([mp3frames.Part(p, part.start // FRAME) for p, part in zip(paths, parts, strict=True)],
                             [part.join for part in parts[1:]], REACH)
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
