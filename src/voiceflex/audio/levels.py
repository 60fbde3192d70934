"""The level plan of an export: every clip and tone at its level, and one gain to the target.

How an export reaches -16 LUFS integrated with true peak <= -1 dBTP:

1. Every clip is levelled to the target on its own, so short and long cues,
   loud and quiet engines all speak at one level ("voice normalised"); tones
   keep their ToneSpec.db, under the voice.
2. The mix's integrated loudness, measured exactly (BS.1770, loudness.py),
   gives the gain to the target.  It is usually +2 to +3.5 dB: short cues and
   pauses leave part-empty 400 ms blocks, and the breathing glides, 9 dB
   under the voice and seconds long, pass the -10 LU relative gate and pull
   the average down (measured: 2.4 of the 2.7 dB on a routine one third
   breathing).
3. Each clip gets a peak budget: the ceiling, less that gain, less the tones
   sounding under it (each tone's own envelope over the overlap); clips over
   budget are shaped (dynamics.py) and levelled back, each measured exactly.
4. Exact mode: the mix is measured again for the final gain.  The peak bound
   (each clip's true peak plus the tones under it; tones alone) caps it; if
   the cap bites by more than GIVE_DB, step 3 runs again with more in hand,
   unless what binds cannot be shaped further.
   Streaming mode (what export and play use): the gain of step 2 stands, and
   step 3 runs in a background thread while the track is already being
   encoded.  Shaped cues are levelled back to their loudness, so the mix
   moves only by how its part-empty blocks change (0.03-0.15 dB measured); a
   cue its budget is out of reach for is turned down to it, so the peak bound
   always holds.  Where those turned-down cues would leave the mix short of
   the target (brief cues over long quiet glides: a breathing routine
   measured -17.9 LUFS), all tones are raised together until the expected
   loudness meets it, never closer than BOOST_HEADROOM_DB to the ceiling.

How the mix is measured without holding it: K-weighting is linear, so the
K-weighted mix is the sum of the K-weighted sounds at their places, and the
energy of a sum over a 100 ms hop is the parts' energies plus twice their
cross products.  Each sound is K-weighted once per version (original,
shaped), and reduced on the spot to its energy per hop at each place it
sounds (a cumulative-sum lookup) and its cross products with the tones it
overlaps.  The result equals the meter run on the rendered track
(tests/test_audio.py) at a fraction of the cost, and memory grows with the
number of cues, never with the length of the routine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voiceflex import leftovers
from voiceflex.audio.dynamics import shape_threshold, soft_clip
from voiceflex.audio.loudness import (
    BLOCK_HOPS,
    HOP,
    K_TAIL,
    from_db,
    gated_loudness,
    hop_energies,
    integrated_loudness,
    k_weight,
    to_db,
    true_peak,
)
from voiceflex.audio.mixer import source_of, total_samples
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.audio.tones import synth
from voiceflex.routine.model import ToneSpec
from voiceflex.timeline import Timeline

TARGET_LUFS = -16.0  # SPEC 5
# SPEC 5 allows -1 dBTP; 0.2 dB kept for the int16 rounding and the meter's
# 4x oversampling (a finer one may find a little more).  Lossy formats pass
# their own ceiling: see export/encoder.py.
CEILING_DBTP = -1.2

# Tones never come closer than this to the ceiling (a routine may set `db: 0`).
TONE_HEADROOM_DB = 4.0
# A near-silent clip is not blown up into noise.
MAX_LEVEL_GAIN_DB = 30.0
# Shaped clips change the gated blocks a little, so the gain wanted after
# shaping differs from the one shaped for by a tenth of a dB or so: up to
# this much shortfall is accepted rather than shaping everything again.
GIVE_DB = 0.25
# No clip is shaped below this peak-to-loudness ratio, whatever the tones
# under it ask (espeak's waveform crest alone is ~10 dB); the final gain
# gives way instead.
MIN_PLR_DB = 9.0
# Up to this much loudness taken by clipping, a shaped cue is levelled back by
# the shaping search's estimate of its loudness.  Measured on 662 such
# shapings of 224 espeak cues: error mean 0.00 dB, 99% within 0.02, all
# within 0.15.  Deeper clipping makes the estimate drift (0.2-0.7 dB at 5-10 dB
# on synthetic voices), so those are measured.
ESTIMATED_LOSS_DB = 3.0
# A streaming plan expected this far under the target raises the tones (at
# most BOOST_MAX_DB, and never past their headroom) to make up for cues that
# must be turned down to fit the peak ceiling.
SHORTFALL_DB = 0.3
BOOST_MAX_DB = 24.0
# Tones raised so come at most this close to the ceiling (their own true peak
# is known: TP_FACTOR), against TONE_HEADROOM_DB for tones at their set level.
BOOST_HEADROOM_DB = 1.0
# How far over its budget the shaping search may land (dynamics.PLR_OVER_DB).
PLR_OVER_DB = 0.05
# A tone's true peak over its sample peak: at most 1/cos(pi f / rate), 0.2 dB
# for the highest built-in tone; 2.5% covers tones up to ~1.6 kHz.
TP_FACTOR = 1.025
# Clips are levelled and shaped in threads: numpy's FFTs and array loops run
# without the GIL, and an export has both cores to itself before encoding.
_WORKERS = min(4, os.cpu_count() or 1)
# Part of every memo key (see _Memo): bump it when what the meter stores, or
# how a streaming plan is made, changes (2: tones raised for turned-down cues).
MEMO_VERSION = 2


@dataclass(frozen=True, eq=False)
class Leveled:
    """A clip at its place in the mix: int16 `samples` times `scale` (over 32768)."""

    samples: np.ndarray
    rate: int
    scale: float

    @property
    def ms(self) -> int:
        return round(len(self.samples) * 1000 / self.rate)

    def as_float(self) -> np.ndarray:
        return self.samples * np.float32(self.scale / 32768.0)


@dataclass(frozen=True)
class LevelPlan:
    """What an export mixes: clips and tones at their levels, and the gain over all of it."""

    clips: Mapping[str, Any]  # Leveled clips (or, streaming, Deferred ones)
    tones: dict[str, ToneSpec]
    gain_db: float
    loudness_lufs: float  # integrated loudness of the mix after gain_db (streaming: expected)
    peak_bound_dbtp: float  # upper bound of its true peak after gain_db
    close: Callable[[], None] = lambda: None  # stops background shaping no longer needed
    bed_scale: float = 0.0  # the sound bed's factor before gain_db (bed.Bed.scale)


def level_voice(clip: Any, target_lufs: float = TARGET_LUFS) -> Leveled:
    """`clip` scaled to `target_lufs` (within +-30 dB; silence stays as it is)."""
    samples, scale = _int16(clip)
    loudness = _clip_loudness(samples, scale, k_weight(samples))
    return Leveled(samples, RATE, scale * 32768.0 * _level_gain(loudness, target_lufs))


def plan_levels(
    timeline: Timeline,
    clips: Mapping[str, Any],
    tones: Mapping[str, ToneSpec],
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbtp: float = CEILING_DBTP,
    streaming: bool = False,
    memo_dir: Path | None = None,
    bed: Any = None,
) -> LevelPlan:
    """Levels for exporting `timeline`: integrated loudness `target_lufs`, true peak <= ceiling.

    With `memo_dir`, what was measured is kept there (_Memo) and read back
    when the same routine with the same clips is rendered again: each cue's
    loudness and energies in the mix (at any target: the K-weighting of every
    clip, most of the time before the first chunk, is skipped) and, streaming,
    the plan itself with the threshold each cue was shaped at (its search is
    skipped too).  The samples come out the same either way.

    With `streaming`, the plan is returned as soon as the gain is known (cues
    levelled, the mix measured once): cues are shaped by a background thread
    in the order they are first spoken, while the export already encodes, and
    `clips` holds Deferred clips the mixer waits for.  Shaped cues are
    levelled back exactly, so the mix's loudness moves only by how part-empty
    blocks change: 0.04-0.15 dB on the routines measured, inside the 1 LU
    allowed.  True peak stays bounded: a cue that cannot be shaped to its
    budget is turned down to it.

    A sound `bed` (audio/bed.Bed) sits `bed.level_db` under the levelled
    cues: its energy per hop (its envelope applied) joins the mix's, its
    peak under each cue joins the tones' in that cue's budget.  A bed is
    not correlated with the voice, so the cross terms are left out (their
    sum over a 400 ms block is noise around zero).
    """
    texts = list(dict.fromkeys(e.text or "" for e in timeline.events if e.kind == "speech"))
    for text in texts:
        if text not in clips:
            raise ValueError(f"no clip for the speech event {text!r}")
    sources = {text: _int16(clips[text]) for text in texts}
    tones = dict(tones)
    bed_scale = bed.scale(target_lufs) if bed is not None else 0.0
    memo = (_Memo(memo_dir, timeline, sources, tones, bed.key if bed is not None else None)
            if memo_dir is not None else None)
    if memo is not None and streaming:
        done = memo.plan(target_lufs, ceiling_dbtp, texts)
        if done is not None:
            voice = {t: _Voice(("speech", t), *sources[t], target_lufs, None,
                               known=(memo.loudness[t], None)) for t in texts}
            return _streamed(timeline, voice, tones, done, target_lufs, ceiling_dbtp, memo, bed_scale)
    meter = _Meter(timeline, {text: len(s) for text, (s, _) in sources.items()}, tones, bed, bed_scale)
    known = memo.read() if memo is not None else {}
    fresh = [t for t in texts if t not in known or ("speech", t) in meter.keep]
    voice = {t: _Voice(("speech", t), *sources[t], target_lufs, meter, known=known[t])
             for t in texts if t not in fresh}
    if fresh:
        with ThreadPoolExecutor(_WORKERS) as pool:
            # The tones too, synthesized and K-weighted beside the cues: the
            # meter and the peak bounds need them next.
            for key in meter.tone_keys():
                pool.submit(meter.prepare_tone, key, tones[key[1]])
            made = pool.map(lambda t: _Voice(("speech", t), *sources[t], target_lufs, meter), fresh)
            voice.update(zip(fresh, made, strict=True))
        if memo is not None:
            memo.write({t: (v.loudness, v.unit) for t, v in voice.items()
                        if ("speech", t) not in meter.keep})
    voice = {t: voice[t] for t in texts}  # first-spoken order: the shaper follows it
    leveled = {text: v.leveled for text, v in voice.items()}

    first = meter.loudness({text: v.weighed for text, v in voice.items()}, tones)
    if not np.isfinite(first):  # nothing audible: nothing to level
        return LevelPlan(leveled, tones, 0.0, first, float("-inf"), bed_scale=bed_scale)

    if streaming:
        return _streaming(timeline, voice, tones, target_lufs - first, target_lufs, ceiling_dbtp,
                          memo, meter, bed_scale)
    ceiling = from_db(ceiling_dbtp)
    planned = target_lufs - first
    for _ in range(3):
        tones_now = {name: _capped(spec, ceiling_dbtp - TONE_HEADROOM_DB - planned)
                     for name, spec in tones.items()}
        under = _Overlaps(timeline, tones_now, meter.bed_peak)
        allowance = under.per_cue(timeline, leveled)
        room = ceiling / from_db(planned)  # the peak a clip may have at its own level
        budgets = {text: max(to_db(max(room - allowance.get(text, 0.0), 1e-6)) - target_lufs,
                             MIN_PLR_DB) for text in voice}
        with ThreadPoolExecutor(_WORKERS) as pool:
            shaped = pool.map(lambda t, b=budgets: voice[t].within(b[t]), voice)
            results = dict(zip(voice, shaped, strict=True))
        measured = meter.loudness({t: r.weighed for t, r in results.items()}, tones_now)
        wanted = target_lufs - measured
        bounds = {text: r.peak + allowance.get(text, 0.0) for text, r in results.items()}
        bound = max([*bounds.values(), under.alone()], default=0.0)
        final = min(wanted, ceiling_dbtp - to_db(bound))
        if wanted - final <= GIVE_DB:
            break
        # Another round helps only if what holds the gain back could be
        # shaped further: not tones alone, not a clip that missed its budget.
        binding = [t for t, b in bounds.items() if b >= 0.999 * bound]
        if not binding or any(budgets[t] <= MIN_PLR_DB or
                              to_db(results[t].peak) - target_lufs > budgets[t] + 0.05
                              for t in binding):
            break
        planned = wanted + 0.1
    shaped = {text: r.clip for text, r in results.items()}
    return LevelPlan(shaped, tones_now, final, measured + final, to_db(bound) + final, bed_scale=bed_scale)


def _streaming(timeline: Timeline, voice: Mapping[str, _Voice], tones: Mapping[str, ToneSpec],
               wanted: float, target_lufs: float, ceiling_dbtp: float,
               memo: _Memo | None, meter: _Meter, bed_scale: float) -> LevelPlan:
    planned = wanted + PLR_OVER_DB  # room for the shaping search landing a little over
    cap = ceiling_dbtp - TONE_HEADROOM_DB - planned
    tones_now = {name: _capped(spec, cap) for name, spec in tones.items()}
    boost_cap = ceiling_dbtp - BOOST_HEADROOM_DB - planned
    room = from_db(ceiling_dbtp) / from_db(planned)  # the peak a clip may have at its own level
    leveled = {text: v.leveled for text, v in voice.items()}
    boost = 0.0
    for attempt in range(4):
        # The gain and every cue's peak budget, for the tones as they now are
        # (the last round only works these out, for the tones last raised).
        under = _Overlaps(timeline, tones_now, meter.bed_peak)
        gain = min(wanted, ceiling_dbtp - to_db(max(under.alone(), 1e-9)))
        allowance = under.per_cue(timeline, leveled)
        peaks = {text: max(room - allowance.get(text, 0.0), 1e-6) for text in voice}
        if attempt == 3:
            break
        # Cues whose peak budget is under MIN_PLR_DB will be turned down to it
        # (_Shaper._make): when that leaves the mix short of the target (brief
        # cues over long quiet glides), the tones make up for it, up to their
        # own headroom, rather than the file missing -16 LUFS.
        level = _expected_loudness(meter, voice, peaks, tones_now, target_lufs, gain)
        if level >= target_lufs - SHORTFALL_DB or boost >= BOOST_MAX_DB:
            break
        boost = _tone_boost(meter, voice, peaks, tones, boost_cap, target_lufs, gain)
        tones_now = {name: _capped(replace(spec, db=spec.db + boost), boost_cap)
                     for name, spec in tones.items()}
    done = {"wanted": wanted, "gain": gain, "tones_db": {n: t.db for n, t in tones_now.items()},
            "peaks": peaks, "recipes": {}}
    if memo is not None:
        memo.keep_plan(target_lufs, ceiling_dbtp, done, {t: v.loudness for t, v in voice.items()})
    return _streamed(timeline, voice, tones, done, target_lufs, ceiling_dbtp, memo, bed_scale)


def _expected_loudness(meter: _Meter, voice: Mapping[str, _Voice], peaks: Mapping[str, float],
                       tones: Mapping[str, ToneSpec], target: float, gain: float) -> float:
    """The mix's loudness once cues out of their peak budget's reach are turned down to it."""
    levels = {}
    for text, v in voice.items():
        short = max(0.0, MIN_PLR_DB - (to_db(peaks[text]) - target))  # dB the cue is turned down
        levels[text] = v.unit.at(v.leveled.scale / 32768.0 * from_db(-short))
    return meter.loudness(levels, tones) + gain


def _tone_boost(meter: _Meter, voice: Mapping[str, _Voice], peaks: Mapping[str, float],
                tones: Mapping[str, ToneSpec], cap: float, target: float, gain: float) -> float:
    """How many dB up the tones must go (each at most to `cap`) for the mix to reach `target`."""
    low, high = 0.0, BOOST_MAX_DB
    for _ in range(12):  # bisection: the loudness rises with the tones
        mid = (low + high) / 2
        boosted = {name: _capped(replace(spec, db=spec.db + mid), cap) for name, spec in tones.items()}
        if _expected_loudness(meter, voice, peaks, boosted, target, gain) < target:
            low = mid
        else:
            high = mid
    return high


def _streamed(timeline: Timeline, voice: Mapping[str, _Voice], tones: Mapping[str, ToneSpec],
              done: dict, target_lufs: float, ceiling_dbtp: float, memo: _Memo | None,
              bed_scale: float) -> LevelPlan:
    """The streaming plan `done` (gain, tone levels, peak per cue), its cues shaped in the background."""
    tones_now = {name: replace(spec, db=done["tones_db"][name]) if spec.db != done["tones_db"][name]
                 else spec for name, spec in tones.items()}
    shaper = _Shaper(voice, done["peaks"], target_lufs, done["recipes"])

    def close() -> None:
        shaper.stop()
        if memo is not None and shaper.learned:
            memo.keep_recipes(target_lufs, ceiling_dbtp, shaper.recipes)

    clips = {text: _DeferredClip(shaper, text) for text in voice}
    wanted, gain = done["wanted"], done["gain"]
    return LevelPlan(clips, tones_now, gain, target_lufs - (wanted - gain), ceiling_dbtp,
                     close=close, bed_scale=bed_scale)


class _Shaper:
    """Shapes every cue to its peak in a background thread, first-spoken first.

    Any number of mixers may take cues at once, each from its own place in
    the track (an export encodes parts of it in parallel).  Memory follows
    the cues in play, not the routine's length: the thread keeps at most
    LOOKAHEAD cues (in first-spoken order) ahead of the furthest one a mixer
    has asked for, and shaped cues are kept in a KEEP-long least recently
    used list.  A cue needed again once dropped is rebuilt from its recipe
    (the threshold found, the scale): one clip and one rounding, without the
    search, and the same samples.  `recipes` (text -> recipe) may come from
    an earlier render (_Memo); `learned` says new ones were made.
    """

    LOOKAHEAD = 24
    KEEP = 48

    def __init__(self, voice: Mapping[str, _Voice], peaks: Mapping[str, float], target: float,
                 recipes: Mapping[str, list]):
        self.voice, self.peaks, self.target = voice, peaks, target
        self.recipes = dict(recipes)
        self.learned = False
        self._locks = {text: threading.Lock() for text in voice}
        self._kept: OrderedDict[str, Leveled] = OrderedDict()
        self._kept_lock = threading.Lock()
        self._order = {text: i for i, text in enumerate(voice)}  # first-spoken order
        self._reached = -1  # the furthest cue (in that order) a mixer has asked for
        self._moved = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """How many shaped cues are kept."""
        return len(self._kept)

    def take(self, text: str) -> Leveled:
        """The clip for one use of `text` by a mixer."""
        if self._order[text] > self._reached:
            with self._moved:
                self._reached = max(self._reached, self._order[text])
                self._moved.notify()
        with self._locks[text]:
            clip = self._recall(text)
            if clip is None:
                clip = self._make(text)
                self._keep(text, clip)
            return clip

    def stop(self) -> None:
        with self._moved:
            self._stopped = True
            self._moved.notify()

    def _recall(self, text: str) -> Leveled | None:
        with self._kept_lock:
            clip = self._kept.get(text)
            if clip is not None:
                self._kept.move_to_end(text)
            return clip

    def _keep(self, text: str, clip: Leveled) -> None:
        with self._kept_lock:
            self._kept[text] = clip
            while len(self._kept) > self.KEEP:
                self._kept.popitem(last=False)

    def _make(self, text: str) -> Leveled:
        peak = self.peaks[text]
        budget = max(to_db(peak) - self.target, MIN_PLR_DB)
        voice = self.voice[text]
        recipe = self.recipes.get(text)
        if recipe is not None and recipe[0] == round(budget, 2):
            return voice.rebuild(*recipe[1:])
        # Only the clip and its peak are needed: the mix was measured already.
        version = voice.within(budget, weigh=False)
        clip = version.clip
        if version.peak > peak:  # the budget was out of reach: turn it down
            clip = Leveled(clip.samples, RATE, clip.scale * peak / version.peak)
        voice.forget()  # the recipe stands in for it
        self.recipes[text] = [round(budget, 2), version.shaped, version.threshold_db, clip.scale]
        self.learned = True
        return clip

    def _run(self) -> None:
        for index, text in enumerate(self.voice):  # in first-spoken order
            with self._moved:
                self._moved.wait_for(lambda i=index: self._stopped
                                     or i <= self._reached + self.LOOKAHEAD)
            if self._stopped:
                return
            with self._locks[text]:
                if self._recall(text) is not None:
                    continue  # a mixer got there first
                try:
                    self._keep(text, self._make(text))
                except Exception:  # noqa: BLE001 - raised again where a mixer asks for it
                    return


@dataclass(frozen=True)
class _DeferredClip:
    """A cue the mixer gets from the shaper when it reaches it (mixer.Deferred)."""

    shaper: _Shaper
    text: str

    def resolve(self) -> tuple[np.ndarray, np.float32]:
        return source_of(self.shaper.take(self.text))

    def __len__(self) -> int:  # shaping keeps a clip's length
        return len(self.shaper.voice[self.text].leveled.samples)


# --- clips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    """A clip at a level: the clip, its true peak, and its K-weighted energy where it lies."""

    clip: Leveled
    peak: float
    weighed: _Weighed | None  # None when made for a mix measured already (streaming)
    shaped: bool = False  # False: the levelled clip itself
    threshold_db: float | None = None  # shaped: soft-clipped at this threshold (None: only rounded)


class _Voice:
    """One cue: its clip levelled, and shaped to a peak budget on demand (the latest kept)."""

    def __init__(self, key: tuple, samples: np.ndarray, scale: float, target_lufs: float,
                 meter: _Meter | None, known: tuple[float, _Weighed | None] | None = None):
        self.key = key
        self.target = target_lufs
        self.meter = meter
        if known is None:
            weighed, k = meter.weigh(key, samples)
            loudness = _clip_loudness(samples, scale, k)
        else:  # measured by an earlier render of the same routine (_Memo)
            loudness, weighed = known
        self.loudness, self.unit = loudness, weighed
        self.leveled = Leveled(samples, RATE, scale * 32768.0 * _level_gain(loudness, target_lufs))
        self.weighed = weighed.at(self.leveled.scale / 32768.0) if weighed is not None else None
        self._peak: float | None = None
        self._last: tuple[tuple[float, bool], _Version] | None = None

    @property
    def peak(self) -> float:
        """The levelled clip's true peak: measured when first asked (the gain does not need it)."""
        if self._peak is None:
            self._peak = true_peak(self.leveled.as_float())
        return self._peak

    def within(self, max_plr_db: float, *, weigh: bool = True) -> _Version:
        """This clip with true peak at most `max_plr_db` above its level.

        Without `weigh`, a shaped version comes without its energies for the
        meter (the streaming plan measured the mix before shaping).
        """
        if to_db(self.peak) - self.target <= max_plr_db:
            return _Version(self.leveled, self.peak, self.weighed)
        key = (round(max_plr_db, 2), weigh)
        if self._last is None or self._last[0] != key:  # only the latest is kept: memory
            self._last = (key, self._shape(key[0], weigh))
        return self._last[1]

    def forget(self) -> None:
        """Let go of the shaped version (asked for again, it is made again)."""
        self._last = None

    def rebuild(self, shaped: bool, threshold_db: float | None, scale: float) -> Leveled:
        """The clip a shaping made (its _Version's `shaped`, `threshold_db`), at `scale`: exactly."""
        if not shaped:
            return Leveled(self.leveled.samples, RATE, scale)
        x = self.leveled.as_float()
        y = x if threshold_db is None else soft_clip(x, 10.0 ** (threshold_db / 20.0))
        return Leveled(_quantize(y)[0], RATE, scale)

    def _shape(self, max_plr_db: float, weigh: bool) -> _Version:
        x = self.leveled.as_float()
        aim = max_plr_db
        for _ in range(3):
            y, peak_y, threshold, estimate = shape_threshold(x, aim, self.target)
            samples, scale = _quantize(y)
            weighed = None
            if weigh:
                weighed, k = self.meter.weigh(self.key, samples)  # measured exactly
                loudness = _clip_loudness(samples, scale / 32768.0, k)
            elif self.target - estimate <= ESTIMATED_LOSS_DB:
                # Streaming (the mix was measured before shaping): the clip is
                # levelled back by the search's own estimate of its loudness
                # instead of being K-weighted again, which took a third of the
                # shaping's time.  Its peak follows the level applied, so the
                # peak budget holds all the same.
                loudness = estimate
            else:
                loudness = _clip_loudness(samples, scale / 32768.0, k_weight(samples))
            level = _level_gain(loudness, self.target)
            clip = Leveled(samples, RATE, scale * level)
            # the search measured y's true peak; rounding to int16 moves it < 1e-4
            peak = peak_y * level * 1.0001
            over = to_db(peak) - self.target - max_plr_db
            if over <= 0.05:
                break
            aim -= over + 0.02  # the search's loudness estimate was off by about this
        return _Version(clip, peak, weighed.at(clip.scale / 32768.0) if weighed else None,
                        shaped=True, threshold_db=threshold)


def _int16(clip: Any) -> tuple[np.ndarray, float]:
    """A clip's samples as int16 and the factor to [-1, 1] (float clips are quantised)."""
    samples, scale = source_of(clip)
    if samples.dtype != np.int16:
        samples, base = _quantize(samples * scale)
        return samples, base / 32768.0
    return samples, float(scale)


def _clip_loudness(samples: np.ndarray, scale: float, k: np.ndarray) -> float:
    """A clip's loudness (LUFS) from its K-weighted samples; shorter than a block: looped."""
    if 0 < len(samples) < BLOCK_HOPS * HOP:
        return integrated_loudness(np.resize(samples.astype(np.float32) * np.float32(scale),
                                             BLOCK_HOPS * HOP))
    return gated_loudness(hop_energies(k[: len(samples)]) * scale * scale)


def _level_gain(loudness: float, target: float) -> float:
    if not np.isfinite(loudness):
        return 1.0
    return from_db(float(np.clip(target - loudness, -MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB)))


def _quantize(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Float samples as int16 filling the range, and the scale (over 32768) that restores them."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0.0:
        return np.zeros(len(x), np.int16), 1.0
    q = np.rint(np.asarray(x, dtype=np.float64) * (32767.0 / peak)).astype(np.int16)
    return q, peak * 32768.0 / 32767.0


def _capped(spec: ToneSpec, max_db: float) -> ToneSpec:
    return spec if spec.db <= max_db else replace(spec, db=max_db)


# --- peaks of tones -------------------------------------------------------------------------


class _Overlaps:
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


# --- the meter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Weighed:
    """One version of a sound, K-weighted, reduced to what the meter needs: the energy it adds
    to each 100 ms hop where it sounds, and the cross terms with the tones it overlaps."""

    hops: np.ndarray  # hop indices
    energy: np.ndarray  # its own energy in those hops, in its data's units squared
    cross: tuple[tuple[np.ndarray, np.ndarray, str], ...] = ()  # (hops, sum k*k_tone, tone name)
    k16: np.ndarray | None = None  # K-weighted samples (int16), kept only when it overlaps speech
    k_scale: float = 0.0
    level: float = 1.0  # data units to mix level

    def at(self, level: float) -> _Weighed:
        return replace(self, level=level)


class _Meter:
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
                 tones: Mapping[str, ToneSpec], bed: Any = None, bed_scale: float = 0.0):
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

    def weigh(self, key: tuple, data: np.ndarray) -> tuple[_Weighed, np.ndarray]:
        """`data` (the sound `key` stands for) weighed for the meter, and K-weighted (float32)."""
        k = k_weight(data)
        hops, energy = self._own(k, self.starts.get(key, ()))
        cross = tuple(self._cross(k, start, self._unit_tone(tone), tone_start, tone[1])
                      for start, tone_start, tone in self.speech_tone.get(key, ()))
        k16, k_scale = None, 0.0
        if key in self.keep:
            k16, k_scale = _quantize(k)
            k_scale /= 32768.0
        return _Weighed(hops, energy, cross, k16, k_scale), k

    def loudness(self, voices: Mapping[str, _Weighed], tones: Mapping[str, ToneSpec]) -> float:
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


# --- the memo -------------------------------------------------------------------------------


class _Memo:
    """What the level plan of one routine measured and decided, on disk, to be used again.

    Two files, keyed by everything a measurement depends on: where every
    sound of the timeline lies, the tones, the sound bed (its source and settings), and each clip (its length, scale
    and a CRC of its samples; clips come from the voice cache, which never
    renders a cached text again).
    - KEY.npz: each cue's loudness and _Weighed, at unit level: the mix's
      loudness at any target follows from them.  Cues whose K-weighted
      samples the meter keeps (speech running into speech) are measured
      again each time.
    - KEY.json: each cue's loudness, and per (target, ceiling) the streaming
      plan: gain, tone levels, each cue's peak, and its shaping recipe.
    A memo that cannot be read or written, or does not hold what it should,
    is simply not used (and written again).
    """

    def __init__(self, folder: Path, timeline: Timeline,
                 sources: Mapping[str, tuple[np.ndarray, float]], tones: Mapping[str, ToneSpec],
                 bed: str | None = None):
        self.tone_names = set(tones)
        self.hop_count = -(-total_samples(timeline) // HOP)
        digest = hashlib.sha256(json.dumps([
            MEMO_VERSION, total_samples(timeline),
            [(e.kind, e.start_ms, e.end_ms, e.text, e.name) for e in timeline.events],
            sorted((name, repr(spec)) for name, spec in tones.items()),
            [(text, len(s), scale, zlib.crc32(s)) for text, (s, scale) in sources.items()],
            *([bed] if bed is not None else []),  # without a bed, the keys of earlier memos stand
        ]).encode())
        self.path = Path(folder) / f"{digest.hexdigest()}.npz"
        self.plans_path = self.path.with_suffix(".json")
        self._plans: dict | None = None

    @property
    def loudness(self) -> dict[str, float]:
        return self._json()["loudness"]

    def plan(self, target: float, ceiling: float, texts: list[str]) -> dict | None:
        """The streaming plan kept for this target and ceiling, if it covers `texts`.

        Recipes that do not look like _Shaper's are left out (made again).
        """
        done = self._json()["plans"].get(f"{target!r} {ceiling!r}")
        numbers = lambda d, keys: (isinstance(d, dict) and set(d) == set(keys)  # noqa: E731
                                   and all(_number(v) for v in d.values()))
        if not (isinstance(done, dict) and _number(done.get("wanted")) and _number(done.get("gain"))
                and numbers(done.get("tones_db"), self.tone_names)
                and numbers(done.get("peaks"), texts)
                and all(_number(self.loudness.get(t), finite=False) for t in texts)
                and isinstance(done.get("recipes"), dict)):
            return None
        recipes = {t: r for t, r in done["recipes"].items()
                   if t in done["peaks"] and isinstance(r, list) and len(r) == 4
                   and _number(r[0]) and isinstance(r[1], bool)
                   and (r[2] is None or _number(r[2])) and _number(r[3])}
        return {**done, "recipes": recipes}

    def keep_plan(self, target: float, ceiling: float, done: dict,
                  loudness: Mapping[str, float]) -> None:
        data = self._json()
        data["loudness"] = dict(loudness)
        data["plans"][f"{target!r} {ceiling!r}"] = done
        self._write_json(data)

    def keep_recipes(self, target: float, ceiling: float, recipes: Mapping[str, list]) -> None:
        done = self._json()["plans"].get(f"{target!r} {ceiling!r}")
        if isinstance(done, dict):
            done["recipes"] = dict(recipes)
            self._write_json(self._json())

    def _json(self) -> dict:
        """The JSON file's contents, with "loudness" and "plans" mappings whatever was found."""
        if self._plans is None:
            try:
                data = json.loads(self.plans_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            data = data if isinstance(data, dict) else {}
            for part in ("loudness", "plans"):
                if not isinstance(data.get(part), dict):
                    data[part] = {}
            self._plans = data
        return self._plans

    def _write_json(self, data: dict) -> None:
        _write_atomically(self.plans_path, lambda f: f.write(json.dumps(data).encode()))

    def read(self) -> dict[str, tuple[float, _Weighed]]:
        try:
            with np.load(self.path, allow_pickle=False) as f:
                texts = json.loads(str(f["texts"]))
                tones = json.loads(str(f["tones"]))
                loudness, own, hops, energy = f["loudness"], f["own"], f["hops"], f["energy"]
                cross, cross_hops, products = f["cross"], f["cross_hops"], f["products"]
            if not (set(tones) <= self.tone_names and len(own) == len(texts) + 1
                    and len(loudness) == len(texts) and len(hops) == len(energy) == own[-1]
                    and len(cross_hops) == len(products)
                    and (not len(hops) or 0 <= hops.min() <= hops.max() < self.hop_count)
                    and (not len(cross_hops)
                         or 0 <= cross_hops.min() <= cross_hops.max() < self.hop_count)):
                return {}
            cuts: dict[int, list] = {}
            for i, (text, a, b, tone) in enumerate(cross.tolist()):
                cuts.setdefault(text, []).append((cross_hops[a:b], products[a:b], tones[tone]))
            return {text: (float(loudness[i]), _Weighed(
                        hops[own[i]:own[i + 1]], energy[own[i]:own[i + 1]], tuple(cuts.get(i, ()))))
                    for i, text in enumerate(texts)}
        except Exception:  # noqa: BLE001 - torn, damaged or foreign: measure again
            return {}

    def write(self, measured: Mapping[str, tuple[float, _Weighed]]) -> None:
        texts = list(measured)
        tone_names = sorted({c[2] for _, w in measured.values() for c in w.cross})
        own = np.cumsum([0] + [len(w.hops) for _, w in measured.values()])
        cross, at = [], 0
        for i, (_, w) in enumerate(measured.values()):
            for h, _, tone in w.cross:
                cross.append((i, at, at + len(h), tone_names.index(tone)))
                at += len(h)
        crossed = [c for _, w in measured.values() for c in w.cross]
        arrays = {
            "texts": np.array(json.dumps(texts)), "tones": np.array(json.dumps(tone_names)),
            "loudness": np.array([m[0] for m in measured.values()], dtype=np.float64),
            "own": own.astype(np.int64),
            "hops": _joined([w.hops for _, w in measured.values()], np.int64),
            "energy": _joined([w.energy for _, w in measured.values()], np.float64),
            "cross": np.array(cross, dtype=np.int64).reshape(-1, 4),
            "cross_hops": _joined([c[0] for c in crossed], np.int64),
            "products": _joined([c[1] for c in crossed], np.float64),
        }
        _write_atomically(self.path, lambda f: np.savez(f, **arrays))


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Write a file aside and rename it: a reader sees all of it or none.  Best effort.

    The temporary name carries our pid, as the voice cache's do: what a
    writer killed mid-write leaves is removed by the next one.
    """
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        leftovers.sweep(path.parent, leftovers.TEMP_FILE)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{os.getpid()}-", suffix=".tmp",
                                         delete=False) as f:
            temp = f.name
            write(f)
        os.replace(temp, path)
    except OSError:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _number(x: Any, finite: bool = True) -> bool:
    """A JSON number (a silent cue's loudness is -inf: `finite=False` lets it through)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x != x:
        return False
    return bool(np.isfinite(x)) or not finite


def _joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
