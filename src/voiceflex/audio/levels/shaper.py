"""The cue shaper: a thread shaping each cue to its peak budget ahead of the mixers that need it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from voiceflex.audio.levels.clips import MIN_PLR_DB, Leveled, Voice
from voiceflex.audio.loudness import to_db
from voiceflex.audio.mixer import source_of
from voiceflex.audio.rate import RATE


class Shaper:
    """Shapes every cue to its peak in a thread of its own, first-spoken first.

    Any number of mixers may take cues at once, each from its own place in
    the track (an export encodes parts of it in parallel).  Memory follows
    the cues in play, not the routine's length: the thread keeps at most
    LOOKAHEAD cues (in first-spoken order) ahead of the furthest one a mixer
    has asked for, and shaped cues are kept in a KEEP-long least recently
    used list.  A cue needed again once dropped is rebuilt from its recipe
    (the threshold found, the scale): one clip and one rounding, without the
    search, and the same samples.  `recipes` (text -> recipe) may come from
    an earlier render (Memo); `learned` says new ones were made.
    """

    LOOKAHEAD = 24
    KEEP = 48

    def __init__(self, voice: Mapping[str, Voice], peaks: Mapping[str, float], target: float,
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
class DeferredClip:
    """A cue the mixer gets from the shaper when it reaches it (mixer.Deferred)."""

    shaper: Shaper
    text: str

    def resolve(self) -> tuple[np.ndarray, np.float32]:
        return source_of(self.shaper.take(self.text))

    def __len__(self) -> int:  # shaping keeps a clip's length
        return len(self.shaper.voice[self.text].leveled.samples)
