"""Fakes for unit tests: a TTS engine that needs no espeak, clips and routine metadata made by hand, and export of a hand-made timeline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.voice import Clip, VoiceInfo

FAKE_RATE = 22050


def fake_ms(text: str) -> int:
    """How long FakeEngine speaks `text`: 50 ms a character plus 100 ms."""
    return 50 * len(text) + 100


def fake_clip(text: str) -> Clip:
    """A quiet 220 Hz tone (about -30 dBFS) lasting fake_ms(text), the same every time."""
    n = fake_ms(text) * FAKE_RATE // 1000
    t = np.arange(n) / FAKE_RATE
    return Clip(np.round(1000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16), FAKE_RATE)


class FakeEngine:
    """An Engine that needs no espeak; it records every text it renders."""

    name = "fake"
    version = "1"

    def __init__(self) -> None:
        self.rendered: list[str] = []  # every text rendered, in order

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo("fake/en-us", "Fake American", ("en-us",)),
            VoiceInfo("fake/en", "Fake British", ("en-gb",)),
            VoiceInfo("fake/de", "Fake German", ("de",)),
        ]

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]:
        for text in texts:
            self.rendered.append(text)
            yield text, fake_clip(text)


@dataclass
class FakeClip:
    """A clip as the mixer and the level plan take it: samples (int16 or float32) at a rate."""

    samples: np.ndarray
    rate: int = RATE


@dataclass
class Meta:
    """What export needs to know of a routine, for hand-made timelines."""

    title: str = "Kneeling hip flexor stretch"
    description: str | None = "Loosens tight hip flexors after a day of sitting."
    author: str | None = "Test Author"


def export_parts(timeline, meta, clips, tones, path, *, split=False, fmt="mp3", bitrate="64k", **kwargs):
    """Export a hand-made timeline the way `voiceflex export` does: an audio.track.Track into export.write."""
    from voiceflex import export
    from voiceflex.audio.output_format import output_format
    from voiceflex.audio.track import Track
    from voiceflex.files import cache_path

    output = output_format(fmt, bitrate)
    track = Track(timeline, clips, tones, output=output, memo_dir=cache_path("levels"))
    write = export.write_split if split else export.write
    try:
        return write(track, timeline, meta, path, output=output, **kwargs)
    finally:
        track.close()
