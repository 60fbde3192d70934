"""The analytic meter: the mix's integrated loudness and peak bounds from its sounds, never the mixed track."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from voiceflex.audio.levels.clips import Leveled, quantize
from voiceflex.audio.loudness import HOP, K_TAIL, from_db, gated_loudness, k_weight
from voiceflex.audio.mixer import total_samples
from voiceflex.audio.rate import ms_to_samples
from voiceflex.audio.tones import synth
from voiceflex.routine.model import ToneSpec
from voiceflex.timeline import Timeline

if TYPE_CHECKING:
    from voiceflex.audio.bed import Bed

# A tone's true peak over its sample peak: at most 1/cos(pi f / rate), 0.2 dB
# for the highest built-in tone; 2.5% covers tones up to ~1.6 kHz.
TP_FACTOR = 1.025


class Overlaps:
    """Where tones sound, to bound how much they add to the peaks of what sounds with them."""

    def __init__(self, timeline: Timeline, tones: Mapping[str, ToneSpec],
                 bed_peak: Callable[[int, int], float] | None = None):
        self.bed_peak = bed_peak  # the sound bed's peak bound over a span, if there is a bed
        self.total = total_samples(timeline)
        spans = []
        for e in timeline.events:
            if e.kind == "tone":
                start, end = ms_to_samples(e.start_ms), ms_to_samples(e.end_ms)
                spans.append((start, end, synth(tones[e.name], end - start)))
        spans.sort(key=lambda span: span[0])
        self.spans = spans
        self.starts = np.array([s for s, _, _ in spans], dtype=np.int64)
        self.longest = max((e - s for s, e, _ in spans), default=0)

    def peak(self, start: int, end: int) -> float:
        """An upper bound of the tones' (and the bed's) summed true peak within [start, end)."""
        bed = self.bed_peak(start, end) if self.bed_peak is not None else 0.0
        return self._tones_peak(start, end) + bed

    def _tones_peak(self, start: int, end: int) -> float:
        """Each tone's own highest sample within [start, end) (their envelopes fade), summed
        where tones overlap."""
        lo = int(np.searchsorted(self.starts, start - self.longest))
        hi = int(np.searchsorted(self.starts, end))
        inside = []
        for s, e, data in self.spans[lo:hi]:
            a, b = max(s, start), min(e, end)
            if a < b:
                inside.append((a, b, float(np.abs(data[a - s:b - s]).max()) * TP_FACTOR))
        if len(inside) <= 1:
            return inside[0][2] if inside else 0.0
        edges = sorted([(a, p) for a, _, p in inside] + [(b, -p) for _, b, p in inside])
        running = most = 0.0
        for _, change in edges:  # ends sort before starts at the same sample
            running += change
            most = max(most, running)
        return most

    def per_cue(self, timeline: Timeline, clips: Mapping[str, Leveled]) -> dict[str, float]:
        """Per cue text, the most tone peak under any of its uses."""
        allowance: dict[str, float] = {}
        for e in timeline.events:
            if e.kind == "speech":
                text = e.text or ""
                start = ms_to_samples(e.start_ms)
                peak = self.peak(start, start + len(clips[text].samples))
                allowance[text] = max(allowance.get(text, 0.0), peak)
        return allowance

    def alone(self) -> float:
        """The highest peak of tones by themselves."""
        alone = max((self.peak(s, e) for s, e, _ in self.spans), default=0.0)
        return max(alone, self.bed_peak(0, self.total)) if self.bed_peak is not None else alone


@dataclass(frozen=True)
class Weighed:
    """One version of a sound, K-weighted, reduced to what the meter needs: the energy it adds
    to each 100 ms hop where it sounds, and the cross terms with the tones it overlaps."""

    hops: np.ndarray  # hop indices
    energy: np.ndarray  # its own energy in those hops, in its data's units squared
    cross: tuple[tuple[np.ndarray, np.ndarray, str], ...] = ()  # (hops, sum k*k_tone, tone name)
    k16: np.ndarray | None = None  # K-weighted samples (int16), kept only when it overlaps speech
    k_scale: float = 0.0
    level: float = 1.0  # data units to mix level

    def at(self, level: float) -> Weighed:
        return replace(self, level=level)


class Meter:
    """Integrated loudness of the track's mix from its sounds, each K-weighted once per version.

    The energy of a sum over a hop is the sum of the parts' energies plus
    twice their pairwise cross products, so nothing needs the mixed track:
    each sound's own energy per hop comes from the cumulative sum of its
    squared K-weighted samples at each place it sounds, and where a cue
    overlaps a tone (a cue after a start tone, over a breathing glide) the
    cross products are taken while the cue is K-weighted, against the tone's
    K-weighted samples at unit amplitude (tones are few, and scale linearly
    with their level).  Cues overlapping cues (only their 50 ms filter tails,
    if a routine packs them tight) keep their K-weighted samples instead.
    """

    def __init__(self, timeline: Timeline, lengths: Mapping[str, int],
                 tones: Mapping[str, ToneSpec], bed: Bed | None = None, bed_scale: float = 0.0):
        self.total = total_samples(timeline)
        self.hop_count = -(-self.total // HOP)
        # A sound bed: its energy per hop, fixed (its level follows the target, not the cues).
        self.base = bed.hop_energy(self.hop_count, bed_scale) if bed is not None else None
        self.bed_peak = ((lambda a, b: bed.peak(a, b, bed_scale)) if bed is not None else None)
        self.shapes = {name: replace(spec, db=0.0) for name, spec in tones.items()}
        spans = []  # (start, end with the K tail, key)
        for e in timeline.events:
            start = ms_to_samples(e.start_ms)
            if e.kind == "speech":
                key, length = ("speech", e.text or ""), lengths[e.text or ""]
            else:
                length = ms_to_samples(e.end_ms) - start
                key = ("tone", e.name, length)
            if length > 0 and start < self.total:
                spans.append((start, min(start + length + K_TAIL, self.total), key))
        spans.sort(key=lambda span: span[0])
        self.starts: dict[tuple, list[int]] = {}
        for start, _, key in spans:
            self.starts.setdefault(key, []).append(start)
        # Overlapping pairs, found by a sweep over the spans sorted by start.
        self.speech_tone: dict[tuple, list[tuple[int, int, tuple]]] = {}
        self.tone_tone: list[tuple[int, tuple, int, tuple]] = []
        self.speech_speech: list[tuple[int, tuple, int, tuple]] = []
        open_spans: list[tuple[int, int, tuple]] = []
        for start, end, key in spans:
            open_spans = [o for o in open_spans if o[1] > start]
            for o_start, _, o_key in open_spans:
                kinds = (o_key[0], key[0])
                if kinds == ("tone", "tone"):
                    self.tone_tone.append((o_start, o_key, start, key))
                elif kinds == ("speech", "speech"):
                    self.speech_speech.append((o_start, o_key, start, key))
                elif o_key[0] == "speech":
                    self.speech_tone.setdefault(o_key, []).append((o_start, start, key))
                else:
                    self.speech_tone.setdefault(key, []).append((start, o_start, o_key))
            open_spans.append((start, end, key))
        self.keep = {k for pair in self.speech_speech for k in (pair[1], pair[3])}
        self._unit: dict[tuple, np.ndarray] = {}  # K-weighted tones at unit amplitude

    def weigh(self, key: tuple, data: np.ndarray) -> tuple[Weighed, np.ndarray]:
        """`data` (the sound `key` stands for) weighed for the meter, and K-weighted (float32)."""
        k = k_weight(data)
        hops, energy = self._own(k, self.starts.get(key, ()))
        cross = tuple(self._cross(k, start, self._unit_tone(tone), tone_start, tone[1])
                      for start, tone_start, tone in self.speech_tone.get(key, ()))
        k16, k_scale = None, 0.0
        if key in self.keep:
            k16, k_scale = quantize(k)
            k_scale /= 32768.0
        return Weighed(hops, energy, cross, k16, k_scale), k

    def loudness(self, voices: Mapping[str, Weighed], tones: Mapping[str, ToneSpec]) -> float:
        """Integrated loudness of the mix: cues at the versions given, tones at their specs."""
        energies = np.zeros(self.hop_count) if self.base is None else self.base.copy()
        amplitude = {name: from_db(spec.db) for name, spec in tones.items()}
        for w in voices.values():
            np.add.at(energies, w.hops, w.energy * (w.level * w.level))
            for hops, products, tone in w.cross:
                np.add.at(energies, hops, products * (2.0 * w.level * amplitude[tone]))
        for key, starts in self.starts.items():
            if key[0] == "tone":
                hops, energy = self._own(self._unit_tone(key), starts)
                np.add.at(energies, hops, energy * amplitude[key[1]] ** 2)
        for a_start, a, b_start, b in self.tone_tone:
            hops, products = self._cross(self._unit_tone(a), a_start, self._unit_tone(b), b_start)
            np.add.at(energies, hops, products * (2.0 * amplitude[a[1]] * amplitude[b[1]]))
        for a_start, a, b_start, b in self.speech_speech:
            wa, wb = voices[a[1]], voices[b[1]]
            hops, products = self._cross(wa.k16 * np.float32(wa.k_scale), a_start,
                                         wb.k16 * np.float32(wb.k_scale), b_start)
            np.add.at(energies, hops, products * (2.0 * wa.level * wb.level))
        return gated_loudness(energies)

    def _own(self, k: np.ndarray, starts) -> tuple[np.ndarray, np.ndarray]:
        """Hop indices and energies of `k` placed at each of `starts`."""
        cumulative = np.concatenate(([0.0], np.cumsum(np.square(k, dtype=np.float64))))
        hops, energy = [], []
        for start in starts:
            n = min(len(k), self.total - start)
            first, last = start // HOP, (start + n - 1) // HOP
            edges = np.arange(first, last + 2) * HOP - start
            edges[0], edges[-1] = 0, n
            hops.append(np.arange(first, last + 1))
            energy.append(np.diff(cumulative[edges]))
        if not hops:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(hops), np.concatenate(energy)

    def _cross(self, a: np.ndarray, a_start: int, b: np.ndarray, b_start: int,
               name: str | None = None):
        """Per hop, the sum of a[n - a_start] * b[n - b_start] where both sound."""
        lo = max(a_start, b_start)
        hi = min(a_start + len(a), b_start + len(b), self.total)
        if hi <= lo:
            empty = (np.zeros(0, np.int64), np.zeros(0))
            return (*empty, name) if name is not None else empty
        products = (a[lo - a_start:hi - a_start].astype(np.float64)
                    * b[lo - b_start:hi - b_start])
        first, last = lo // HOP, (hi - 1) // HOP
        edges = np.arange(first + 1, last + 1) * HOP - lo
        sums = np.add.reduceat(products, np.concatenate(([0], edges)))
        hops = np.arange(first, last + 1)
        return (hops, sums, name) if name is not None else (hops, sums)

    def tone_keys(self) -> list[tuple]:
        return [key for key in self.starts if key[0] == "tone"]

    def prepare_tone(self, key: tuple, spec: ToneSpec) -> None:
        """Synthesize tone `key` at `spec` (tones.synth keeps it) and K-weight it, ahead of need."""
        synth(spec, key[2])
        self._unit_tone(key)

    def _unit_tone(self, key: tuple) -> np.ndarray:
        if key not in self._unit:
            self._unit[key] = k_weight(synth(self.shapes[key[1]], key[2]))
        return self._unit[key]
