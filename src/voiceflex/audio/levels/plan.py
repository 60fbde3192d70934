"""The level plan: every clip and tone at its level, and one gain to the target (see the package docstring)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voiceflex.audio.levels.clips import MIN_PLR_DB, Leveled, Sound, Voice, capped, clip_loudness, int16_of, level_gain
from voiceflex.audio.levels.memo import Memo
from voiceflex.audio.levels.meter import Meter, Overlaps
from voiceflex.audio.levels.shaper import DeferredClip, Shaper
from voiceflex.audio.loudness import from_db, k_weight, to_db
from voiceflex.audio.output_format import TARGET_LUFS, WAV
from voiceflex.audio.rate import RATE
from voiceflex.routine.model import ToneSpec
from voiceflex.timeline import Timeline

if TYPE_CHECKING:
    from voiceflex.audio.bed import Bed

# Tones never come closer than this to the ceiling (a routine may set `db: 0`).
TONE_HEADROOM_DB = 4.0
# Shaped clips change the gated blocks a little, so the gain wanted after
# shaping differs from the one shaped for by a tenth of a dB or so: up to
# this much shortfall is accepted rather than shaping everything again.
GIVE_DB = 0.25
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
# Clips are levelled and shaped in threads: numpy's FFTs and array loops run
# without the GIL, and an export has both cores to itself before encoding.
_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class LevelPlan:
    """What an export mixes: clips and tones at their levels, and the gain over all of it."""

    clips: Mapping[str, Leveled | DeferredClip]  # DeferredClips from stream_levels
    tones: dict[str, ToneSpec]
    gain_db: float
    loudness_lufs: float  # integrated loudness of the mix after gain_db (streaming: expected)
    peak_bound_dbtp: float  # upper bound of its true peak after gain_db
    close: Callable[[], None] = lambda: None  # stops the shaping of cues no longer needed
    bed_scale: float = 0.0  # the sound bed's factor before gain_db (bed.Bed.scale)


def level_voice(clip: Sound, target_lufs: float = TARGET_LUFS) -> Leveled:
    """`clip` scaled to `target_lufs` (within +-30 dB; silence stays as it is)."""
    samples, scale = int16_of(clip)
    loudness = clip_loudness(samples, scale, k_weight(samples))
    return Leveled(samples, RATE, scale * 32768.0 * level_gain(loudness, target_lufs))


def exact_levels(timeline: Timeline, clips: Mapping[str, Sound], tones: Mapping[str, ToneSpec], *,
                 target_lufs: float = TARGET_LUFS, ceiling_dbtp: float = WAV.ceiling_dbtp,
                 memo_dir: Path | None = None, bed: Bed | None = None) -> LevelPlan:
    """Levels for `timeline` with every cue shaped now and the mix measured again for the final gain.

    The exact plan the streaming one is held against (tests): integrated
    loudness `target_lufs`, true peak <= `ceiling_dbtp`.  `memo_dir` and
    `bed` as for `stream_levels`.
    """
    texts, sources, tones, bed_scale, memo = _prepared(timeline, clips, tones, target_lufs, memo_dir, bed)
    voice, meter, first = _measured(timeline, texts, sources, tones, target_lufs, memo, bed, bed_scale)
    leveled = {text: v.leveled for text, v in voice.items()}
    if not np.isfinite(first):  # nothing audible: nothing to level
        return LevelPlan(leveled, tones, 0.0, first, float("-inf"), bed_scale=bed_scale)
    ceiling = from_db(ceiling_dbtp)
    planned = target_lufs - first
    for _ in range(3):
        tones_now = {name: capped(spec, ceiling_dbtp - TONE_HEADROOM_DB - planned)
                     for name, spec in tones.items()}
        under = Overlaps(timeline, tones_now, meter.bed_peak)
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


def stream_levels(timeline: Timeline, clips: Mapping[str, Sound], tones: Mapping[str, ToneSpec], *,
                  target_lufs: float = TARGET_LUFS, ceiling_dbtp: float = WAV.ceiling_dbtp,
                  memo_dir: Path | None = None,
                  bed: Bed | None = None) -> LevelPlan:
    """Levels for exporting `timeline`, returned as soon as the gain is known; cues are shaped meanwhile.

    Integrated loudness `target_lufs`, true peak <= `ceiling_dbtp`.  Cues
    are levelled and the mix measured once; the shaper thread then shapes
    them in the order they are first spoken while the export already
    encodes, and the plan's clips are DeferredClips the mixer waits for.
    Shaped cues are levelled back exactly, so the mix's loudness moves only
    by how part-empty blocks change: 0.04-0.15 dB on the routines measured,
    inside the 1 LU allowed.  True peak stays bounded: a cue that cannot be
    shaped to its budget is turned down to it.

    With `memo_dir`, what was measured is kept there (memo.Memo) and read
    back when the same routine with the same clips is rendered again: each
    cue's loudness and energies in the mix (at any target), and the plan
    itself with the threshold each cue was shaped at.  The samples come out
    the same either way.

    A sound `bed` (audio/bed.Bed) sits `bed.level_db` under the levelled
    cues: its energy per hop (its envelope applied) joins the mix's, its
    peak under each cue joins the tones' in that cue's budget.  A bed is
    not correlated with the voice, so the cross terms are left out (their
    sum over a 400 ms block is noise around zero).
    """
    texts, sources, tones, bed_scale, memo = _prepared(timeline, clips, tones, target_lufs, memo_dir, bed)
    if memo is not None:
        done = memo.plan(target_lufs, ceiling_dbtp, texts)
        if done is not None:
            voice = {t: Voice(("speech", t), *sources[t], target_lufs, None,
                              known=(memo.loudness[t], None)) for t in texts}
            return _streamed(timeline, voice, tones, done, target_lufs, ceiling_dbtp, memo, bed_scale)
    voice, meter, first = _measured(timeline, texts, sources, tones, target_lufs, memo, bed, bed_scale)
    if not np.isfinite(first):  # nothing audible: nothing to level
        return LevelPlan({text: v.leveled for text, v in voice.items()}, tones, 0.0, first, float("-inf"),
                         bed_scale=bed_scale)
    return _streaming(timeline, voice, tones, target_lufs - first, target_lufs, ceiling_dbtp,
                      memo, meter, bed_scale)


def _prepared(timeline: Timeline, clips: Mapping[str, Sound], tones: Mapping[str, ToneSpec],
              target_lufs: float, memo_dir: Path | None, bed: Bed | None):
    """The cue texts in first-spoken order, their int16 samples, the tones, the bed's scale and the memo."""
    texts = list(dict.fromkeys(e.text or "" for e in timeline.events if e.kind == "speech"))
    for text in texts:
        if text not in clips:
            raise ValueError(f"no clip for the speech event {text!r}")
    sources = {text: int16_of(clips[text]) for text in texts}
    tones = dict(tones)
    bed_scale = bed.scale(target_lufs) if bed is not None else 0.0
    memo = (Memo(memo_dir, timeline, sources, tones, bed.key if bed is not None else None)
            if memo_dir is not None else None)
    return texts, sources, tones, bed_scale, memo


def _measured(timeline: Timeline, texts: list[str], sources: Mapping[str, tuple[np.ndarray, float]],
              tones: dict[str, ToneSpec], target_lufs: float, memo: Memo | None, bed: Bed | None,
              bed_scale: float) -> tuple[dict[str, Voice], Meter, float]:
    """Every cue levelled and weighed (from the memo where it has them), the meter, and the mix's loudness."""
    meter = Meter(timeline, {text: len(s) for text, (s, _) in sources.items()}, tones, bed, bed_scale)
    known = memo.read() if memo is not None else {}
    fresh = [t for t in texts if t not in known or ("speech", t) in meter.keep]
    voice = {t: Voice(("speech", t), *sources[t], target_lufs, meter, known=known[t])
             for t in texts if t not in fresh}
    if fresh:
        with ThreadPoolExecutor(_WORKERS) as pool:
            # The tones too, synthesized and K-weighted beside the cues: the
            # meter and the peak bounds need them next.
            for key in meter.tone_keys():
                pool.submit(meter.prepare_tone, key, tones[key[1]])
            made = pool.map(lambda t: Voice(("speech", t), *sources[t], target_lufs, meter), fresh)
            voice.update(zip(fresh, made, strict=True))
        if memo is not None:
            memo.write({t: (v.loudness, v.unit) for t, v in voice.items()
                        if ("speech", t) not in meter.keep})
    voice = {t: voice[t] for t in texts}  # first-spoken order: the shaper follows it
    first = meter.loudness({text: v.weighed for text, v in voice.items()}, tones)
    return voice, meter, first


def _streaming(timeline: Timeline, voice: Mapping[str, Voice], tones: Mapping[str, ToneSpec],
               wanted: float, target_lufs: float, ceiling_dbtp: float,
               memo: Memo | None, meter: Meter, bed_scale: float) -> LevelPlan:
    planned = wanted + PLR_OVER_DB  # room for the shaping search landing a little over
    cap = ceiling_dbtp - TONE_HEADROOM_DB - planned
    tones_now = {name: capped(spec, cap) for name, spec in tones.items()}
    boost_cap = ceiling_dbtp - BOOST_HEADROOM_DB - planned
    room = from_db(ceiling_dbtp) / from_db(planned)  # the peak a clip may have at its own level
    leveled = {text: v.leveled for text, v in voice.items()}
    boost = 0.0
    for attempt in range(4):
        # The gain and every cue's peak budget, for the tones as they now are
        # (the last round only works these out, for the tones last raised).
        under = Overlaps(timeline, tones_now, meter.bed_peak)
        gain = min(wanted, ceiling_dbtp - to_db(max(under.alone(), 1e-9)))
        allowance = under.per_cue(timeline, leveled)
        peaks = {text: max(room - allowance.get(text, 0.0), 1e-6) for text in voice}
        if attempt == 3:
            break
        # Cues whose peak budget is under MIN_PLR_DB will be turned down to it
        # (Shaper._make): when that leaves the mix short of the target (brief
        # cues over long quiet glides), the tones make up for it, up to their
        # own headroom, rather than the file missing -16 LUFS.
        level = _expected_loudness(meter, voice, peaks, tones_now, target_lufs, gain)
        if level >= target_lufs - SHORTFALL_DB or boost >= BOOST_MAX_DB:
            break
        boost = _tone_boost(meter, voice, peaks, tones, boost_cap, target_lufs, gain)
        tones_now = {name: capped(replace(spec, db=spec.db + boost), boost_cap)
                     for name, spec in tones.items()}
    done = {"wanted": wanted, "gain": gain, "tones_db": {n: t.db for n, t in tones_now.items()},
            "peaks": peaks, "recipes": {}}
    if memo is not None:
        memo.keep_plan(target_lufs, ceiling_dbtp, done, {t: v.loudness for t, v in voice.items()})
    return _streamed(timeline, voice, tones, done, target_lufs, ceiling_dbtp, memo, bed_scale)


def _expected_loudness(meter: Meter, voice: Mapping[str, Voice], peaks: Mapping[str, float],
                       tones: Mapping[str, ToneSpec], target: float, gain: float) -> float:
    """The mix's loudness once cues out of their peak budget's reach are turned down to it."""
    levels = {}
    for text, v in voice.items():
        short = max(0.0, MIN_PLR_DB - (to_db(peaks[text]) - target))  # dB the cue is turned down
        levels[text] = v.unit.at(v.leveled.scale / 32768.0 * from_db(-short))
    return meter.loudness(levels, tones) + gain


def _tone_boost(meter: Meter, voice: Mapping[str, Voice], peaks: Mapping[str, float],
                tones: Mapping[str, ToneSpec], cap: float, target: float, gain: float) -> float:
    """How many dB up the tones must go (each at most to `cap`) for the mix to reach `target`."""
    low, high = 0.0, BOOST_MAX_DB
    for _ in range(12):  # bisection: the loudness rises with the tones
        mid = (low + high) / 2
        boosted = {name: capped(replace(spec, db=spec.db + mid), cap) for name, spec in tones.items()}
        if _expected_loudness(meter, voice, peaks, boosted, target, gain) < target:
            low = mid
        else:
            high = mid
    return high


def _streamed(timeline: Timeline, voice: Mapping[str, Voice], tones: Mapping[str, ToneSpec],
              done: dict, target_lufs: float, ceiling_dbtp: float, memo: Memo | None,
              bed_scale: float) -> LevelPlan:
    """The streaming plan `done` (gain, tone levels, peak per cue), its cues shaped by the shaper thread."""
    tones_now = {name: replace(spec, db=done["tones_db"][name]) if spec.db != done["tones_db"][name]
                 else spec for name, spec in tones.items()}
    shaper = Shaper(voice, done["peaks"], target_lufs, done["recipes"])

    def close() -> None:
        shaper.stop()
        if memo is not None and shaper.learned:
            memo.keep_recipes(target_lufs, ceiling_dbtp, shaper.recipes)

    clips = {text: DeferredClip(shaper, text) for text in voice}
    wanted, gain = done["wanted"], done["gain"]
    return LevelPlan(clips, tones_now, gain, target_lufs - (wanted - gain), ceiling_dbtp,
                     close=close, bed_scale=bed_scale)
