"""The render stage: a planned routine's samples, levelled for an output format, read in any span."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from voiceflex.audio.output_format import WAV, OutputFormat

if TYPE_CHECKING:
    import numpy as np

    from voiceflex.audio.bed import Bed
    from voiceflex.routine.model import ToneSpec
    from voiceflex.timeline import Timeline
    from voiceflex.voice.engine import Clip


class Track:
    """A timeline's samples with its clips, tones and sound bed, levelled for `output`; read by any number of threads.

    Levelled to the format's target (README, "Export for a phone"), MP3 with room for what
    its encoder does to peaks.  The levels are planned on the first read, so
    an encoder can start up meanwhile; `close` stops the shaping of cues no
    reader needs any more.  With `memo_dir`, the level measurement is kept
    there: rendering the routine again (export after play, a second export)
    starts without it.
    """

    def __init__(self, timeline: Timeline, clips: Mapping[str, Clip], tones: Mapping[str, ToneSpec], *,
                 output: OutputFormat = WAV, bed: Bed | None = None, memo_dir: Path | None = None):
        from voiceflex.audio.mixer import total_samples

        self.timeline, self.clips, self.tones, self.output = timeline, clips, tones, output
        self._bed, self._memo_dir = bed, memo_dir
        self.total = total_samples(timeline)
        self._levels = None
        self._failed: BaseException | None = None  # raised again to every later reader
        self._lock = threading.Lock()

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """The int16 samples [start, stop) (RATE Hz mono), in chunks."""
        from voiceflex.audio import mixer

        levels = self._planned()
        for chunk in mixer.render(self.timeline, levels.clips, levels.tones,
                                  gain_db=levels.gain_db, start_sample=start, stop_sample=stop,
                                  bed=self._bed, bed_scale=levels.bed_scale):
            yield mixer.to_pcm16(chunk)

    def bed(self, start: int, stop: int) -> np.ndarray:
        """The sound bed's own part of samples [start, stop) as mixed (float32; zero outside the track)."""
        import numpy as np

        out = np.zeros(max(stop - start, 0), np.float32)
        a, b = max(start, 0), min(stop, self.total)
        if self._bed is not None and a < b:
            levels = self._planned()
            gain = np.float32(10.0 ** (levels.gain_db / 20.0))
            out[a - start:b - start] = self._bed.chunk(a, b, levels.bed_scale) * gain
        return out

    def close(self) -> None:
        with self._lock:
            if self._levels is not None:
                self._levels.close()

    def _planned(self):
        from voiceflex.audio.levels import stream_levels

        with self._lock:
            if self._failed is not None:  # each reader of a failed plan fails at once
                raise self._failed
            if self._levels is None:
                # Streaming: the gain is known after one measurement; cues are
                # shaped on another core, ahead of the mix, while the first
                # chunks already go out.
                try:
                    self._levels = stream_levels(
                        self.timeline, self.clips, self.tones, target_lufs=self.output.mix_lufs,
                        ceiling_dbtp=self.output.ceiling_dbtp, memo_dir=self._memo_dir, bed=self._bed)
                except BaseException as e:
                    self._failed = e
                    raise
            return self._levels


def render(track: Track, start_sample: int = 0) -> Iterator[np.ndarray]:
    """All of `track`'s samples (int16, RATE Hz mono) from `start_sample` to the end; closes it after."""
    try:
        yield from track.read(start_sample)
    finally:
        track.close()
