"""A planned routine: its timeline, the voice cues it was timed with and its sound bed, ready to render."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceflex.audio.output_format import WAV, OutputFormat
from voiceflex.audio.track import Track

if TYPE_CHECKING:
    import numpy as np

    from voiceflex.audio.bed import Bed
    from voiceflex.routine.model import Routine
    from voiceflex.timeline import Timeline
    from voiceflex.voice.engine import Clip


@dataclass(frozen=True)
class Plan:
    """A routine with its timeline and the rendered voice cues the timeline was timed with."""

    routine: Routine
    timeline: Timeline
    clips: dict[str, Clip]
    bed: Bed | None = None  # under the whole track

    def track(self, output: OutputFormat = WAV) -> Track:
        """The plan's samples levelled for `output`, the level measurement memoised beside the voice cache."""
        from voiceflex.files import cache_path

        return Track(self.timeline, self.clips, self.routine.tones, output=output, bed=self.bed,
                     memo_dir=cache_path("levels"))


def render(plan: Plan, output: OutputFormat = WAV, start_sample: int = 0) -> Iterator[np.ndarray]:
    """The samples of `plan` (int16, RATE Hz mono) from `start_sample` to the end.

    `play` and `check` take the WAV levels: what the sound card gets is,
    sample for sample, what `export --format wav` writes.
    """
    from voiceflex.audio import track

    return track.render(plan.track(output), start_sample)
