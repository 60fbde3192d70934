"""The streaming mixer: a Timeline with its clips and tones, as fixed-size chunks of samples."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.audio.tones import synth
from voiceflex.routine.model import ToneSpec
from voiceflex.timeline import Timeline

# 3 s of audio.  A whole number of 100 ms loudness hops (2205 samples), so the
# loudness meter can cut chunks into hops without carrying remainders.
CHUNK_SAMPLES = 30 * 2205

_INT16_SCALE = np.float32(1.0 / 32768.0)


class Placement(NamedTuple):
    """One sound on the track: `data` (scaled by `scale`) starting at sample `start`.

    `data` may also be a Deferred: a clip still being prepared, resolved only
    when the mix reaches it.
    """

    start: int
    data: Any  # float32 or int16 samples (`scale` maps them to [-1, 1]), or a Deferred
    scale: np.float32

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class Deferred(Protocol):
    """A clip that is made ready on demand: `resolve()` returns (samples, scale).

    Its length in samples (`len()`) is known before: a mix that starts later
    in the track passes over it without making it.
    """

    def resolve(self) -> tuple[np.ndarray, np.float32]: ...

    def __len__(self) -> int: ...


def total_samples(timeline: Timeline) -> int:
    """The track's exact length in samples."""
    return ms_to_samples(timeline.duration_ms)


def render(
    timeline: Timeline,
    clips: Mapping[str, Any],
    tones: Mapping[str, ToneSpec],
    *,
    gain_db: float = 0.0,
    chunk_samples: int = CHUNK_SAMPLES,
    start_sample: int = 0,
    stop_sample: int | None = None,
    bed: Any = None,
    bed_scale: float = 0.0,
) -> Iterator[np.ndarray]:
    """The track of `timeline` as float32 chunks of `chunk_samples` (the last one shorter).

    `clips` maps each speech event's text to its clip: any object with
    `.samples` (int16, or float32 in [-1, 1]) and `.rate` (22050); an optional
    `.scale` attribute multiplies the samples (the loudness plan uses it).  A
    clip may also be a Deferred, resolved when the mix first reaches it.
    `tones` maps tone names to their specs.  `gain_db` applies to the whole mix.
    The chunks add up to exactly round(duration_ms * 22050 / 1000) samples,
    or to the samples [start_sample, stop_sample) of them.  Every sample is
    the same wherever the chunks start.  A sound `bed` (audio/bed.Bed) is
    mixed under it all at `bed_scale`, before `gain_db`.
    """
    stop = total_samples(timeline)
    if stop_sample is not None:
        stop = min(stop, stop_sample)
    under = (lambda a, b: bed.chunk(a, b, bed_scale)) if bed is not None else None
    return mix(placements(timeline, clips, tones), stop, gain_db=gain_db,
               chunk_samples=chunk_samples, start_sample=start_sample, bed=under)


def placements(
    timeline: Timeline, clips: Mapping[str, Any], tones: Mapping[str, ToneSpec]
) -> list[Placement]:
    """Every event of `timeline` as a Placement, sorted by start.

    Arrays are shared, not copied: a cue spoken 40 times is one array placed
    40 times.  A tone fills its event exactly (end_ms - start_ms); a clip is
    placed whole from the event's start.  Tones are synthesized when the mix
    reaches them (a Deferred), so the first chunk does not wait for the
    breathing glides of the whole routine.
    """
    sources: dict[str, tuple[np.ndarray, np.float32]] = {}
    placed = []
    for event in timeline.events:
        start = ms_to_samples(event.start_ms)
        if event.kind == "speech":
            text = event.text or ""
            if text not in sources:
                if text not in clips:
                    raise ValueError(f"no clip for the speech event {text!r}")
                clip = clips[text]
                deferred = hasattr(clip, "resolve")
                sources[text] = (clip, np.float32(1.0)) if deferred else source_of(clip)
            data, scale = sources[text]
        else:
            if event.name not in tones:
                raise ValueError(f"no tone named {event.name!r}")
            length = ms_to_samples(event.end_ms) - start
            if length <= 0:
                continue
            data = _Tone(tones[event.name], length)
            scale = np.float32(1.0)
        if len(data):
            placed.append(Placement(start, data, scale))
    placed.sort(key=lambda p: p.start)
    return placed


@dataclass(frozen=True)
class _Tone:
    """A tone placement, synthesized (and cached by tones.synth) when the mix reaches it."""

    spec: ToneSpec
    length: int

    def resolve(self) -> tuple[np.ndarray, np.float32]:
        return synth(self.spec, self.length), np.float32(1.0)

    def __len__(self) -> int:
        return self.length


def source_of(clip: Any) -> tuple[np.ndarray, np.float32]:
    """A clip's samples and the factor that maps them to float [-1, 1] at its level."""
    if clip.rate != RATE:
        raise ValueError(f"a clip at {clip.rate} Hz; voiceflex mixes at {RATE} Hz")
    samples = np.asarray(clip.samples)
    if samples.dtype == np.int16:
        scale = _INT16_SCALE
    elif samples.dtype == np.float32:
        scale = np.float32(1.0)
    else:
        raise ValueError(f"clip samples must be int16 or float32, not {samples.dtype}")
    extra = getattr(clip, "scale", None)
    if extra is not None:
        scale = np.float32(scale * extra)
    return samples, scale


def mix(
    placed: Iterable[Placement],
    total: int,
    *,
    gain_db: float = 0.0,
    chunk_samples: int = CHUNK_SAMPLES,
    start_sample: int = 0,
    bed: Callable[[int, int], np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Sum `placed` (sorted by start) into float32 chunks covering samples [start_sample, total).

    Each chunk is a fresh zeroed buffer to which only the placements that touch
    it add their overlapping slice, always in the same order: nothing ever
    holds the whole track, and where no placement sounds the chunk is exactly
    zero, unless a `bed` (samples
    [a, b) of a sound under everything, before the gain) is added last.
    """
    if chunk_samples <= 0:
        raise ValueError("chunk_samples must be positive")
    gain = 10.0 ** (gain_db / 20.0)
    # Sounds over before the first chunk are passed over, never resolved.
    pending = (p for p in placed if p.end > start_sample)
    upcoming = next(pending, None)
    active: list[tuple[int, int, np.ndarray, np.float32]] = []  # (start, end, data, scale)
    for c0 in range(max(start_sample, 0), total, chunk_samples):
        c1 = min(c0 + chunk_samples, total)
        while upcoming is not None and upcoming.start < c1:
            start, data, scale = upcoming
            if hasattr(data, "resolve"):
                data, extra = data.resolve()
                scale = scale * extra
            active.append((start, start + len(data), data, np.float32(scale * gain)))
            upcoming = next(pending, None)
        buf = np.zeros(c1 - c0, np.float32)
        still = []
        for item in active:
            start, end, data, scale = item
            a = max(start, c0)
            b = min(end, c1)
            if a < b:
                segment = data[a - start:b - start]
                if scale == 1.0:
                    buf[a - c0:b - c0] += segment
                else:
                    buf[a - c0:b - c0] += segment * scale
            if end > c1:
                still.append(item)
        active = still
        if bed is not None:
            buf += bed(c0, c1) * np.float32(gain)
        yield buf


def to_pcm16(chunk: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as little-endian int16, rounded and clipped."""
    x = np.multiply(chunk, np.float32(32768.0), dtype=np.float32)
    np.rint(x, out=x)
    np.clip(x, -32768.0, 32767.0, out=x)
    return x.astype("<i2")
