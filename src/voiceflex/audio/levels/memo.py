"""The level memo: what a routine's level plan measured and decided, kept on disk and sealed."""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from voiceflex import files
from voiceflex.audio.levels.meter import Weighed
from voiceflex.audio.loudness import HOP
from voiceflex.audio.mixer import total_samples
from voiceflex.routine.model import ToneSpec
from voiceflex.timeline import Timeline

# Part of every memo key (see Memo): bump it when what the meter stores, or
# how a streaming plan is made, changes (2: tones raised for turned-down cues).
MEMO_VERSION = 2


class Memo:
    """What the level plan of one routine measured and decided, on disk, to be used again.

    Two files, keyed by everything a measurement depends on: where every
    sound of the timeline lies, the tones, the sound bed (its source and settings), and each clip (its length, scale
    and a CRC of its samples; clips come from the voice cache, which never
    renders a cached text again).
    - KEY.npz: each cue's loudness and Weighed, at unit level: the mix's
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

        Recipes that do not look like Shaper's are left out (made again).
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
                raw = files.read(self.plans_path, _MEMO_BYTES)
                seal, _, body = (raw or b"").partition(b"\n")
                # Sealed with its key: a changed digit of a gain would export a wrong level.
                data = json.loads(body) if seal.decode() == _seal(self.path.stem, body) else None
            except (OSError, ValueError):
                data = None
            data = data if isinstance(data, dict) else {}
            for part in ("loudness", "plans"):
                if not isinstance(data.get(part), dict):
                    data[part] = {}
            self._plans = data
        return self._plans

    def _write_json(self, data: dict) -> None:
        body = json.dumps(data).encode()
        files.write_atomically(self.plans_path, lambda f: f.write(_seal(self.path.stem, body).encode() + b"\n" + body))

    def read(self) -> dict[str, tuple[float, Weighed]]:
        try:
            raw = files.read(self.path, _MEMO_BYTES)
            if raw is None:
                return {}
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                f = {name: npz[name] for name in npz.files}
            if str(f.pop("seal")) != _seal(self.path.stem, *_array_bytes(f)):
                return {}
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
            return {text: (float(loudness[i]), Weighed(
                        hops[own[i]:own[i + 1]], energy[own[i]:own[i + 1]], tuple(cuts.get(i, ()))))
                    for i, text in enumerate(texts)}
        except Exception:  # noqa: BLE001 - torn, damaged or foreign: measure again
            return {}

    def write(self, measured: Mapping[str, tuple[float, Weighed]]) -> None:
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
        arrays["seal"] = np.array(_seal(self.path.stem, *_array_bytes(arrays)))
        files.write_atomically(self.path, lambda f: np.savez(f, **arrays))


_MEMO_BYTES = 1 << 28  # far above a 6-hour routine's memo; a bigger file is damaged


def _seal(key: str, *parts: bytes) -> str:
    """The SHA-256 of a memo's contents and of the key it was written under."""
    digest = hashlib.sha256(key.encode())
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _array_bytes(arrays: Mapping[str, np.ndarray]) -> list[bytes]:
    """Each array's name, type, shape and data, in name order: what a memo's seal covers."""
    return [f"{name} {a.dtype.str} {a.shape}".encode() + np.ascontiguousarray(a).tobytes()
            for name, a in sorted(arrays.items())]


def _number(x: Any, finite: bool = True) -> bool:
    """A JSON number (a silent cue's loudness is -inf: `finite=False` lets it through)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or x != x:
        return False
    return bool(np.isfinite(x)) or not finite


def _joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
