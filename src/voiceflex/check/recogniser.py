"""pocketsphinx listening for a routine's own cues: a grammar of its distinct cue texts, one decode per window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceflex.check.cue_words import Unspeakable, spoken_words
from voiceflex.errors import MissingComponentError

# pocketsphinx's en-us model listens at 16 kHz, 100 frames a second.
RATE_16K = 16_000
FRAME_MS = 10

# Exact-zero (and near-zero) silence gives the front end log(0) energies and
# the decoder then loses short cues; a faint dither (about -61 dBFS, far
# under speech at -16 LUFS) fixes that.  Seeded, so a check is repeatable.
DITHER_SIGMA = 30.0

# When the search finds no path at all (its beams pruned every one), the
# window is decoded again with much wider beams.  Not the default: on the
# built-in routines they recognised fewer cues (171 of 181 against 178).
WIDE_BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}

INSTALL_HINT = "pip install 'voiceflex[check]'"

# Words of the routines' own field that the model's dictionary (CMUdict)
# lacks, spelled the way espeak-ng says them (`espeak-ng -x WORD`, mapped to
# the model's phones), so cues naming these muscles can be checked too.
EXTRA_WORDS = {
    "flexor": "F L EH K S ER", "flexors": "F L EH K S ER Z",
    "psoas": "S OW AH Z", "iliopsoas": "IH L IY AH P S OW AH Z",
    "glute": "G L UW T", "glutes": "G L UW T S", "gluteal": "G L UW T IY AH L",
    "pec": "P EH K", "pecs": "P EH K S",
    "piriformis": "P IH R IH F AO R M IH S",
    "sacrum": "S EY K R AH M",
    "adductor": "AH D AH K T ER", "adductors": "AH D AH K T ER Z",
}

_FILLERS = ("<", "[", "(", "+")


@dataclass(frozen=True)
class Heard:
    """What the decoder made of one cue's window."""

    words: str  # the hypothesis, "" if nothing
    onset_ms: int | None  # where its first word starts, in track milliseconds
    span_ms: int  # from the start of its first word to the end of its last
    complete: bool  # the hypothesis is one whole cue of the grammar



def load_pocketsphinx():
    """The pocketsphinx module and its en-us model folder, or MissingComponentError."""
    try:
        import pocketsphinx
    except ImportError:
        raise MissingComponentError("pocketsphinx is not installed; `voiceflex check` listens with it",
                                    hint=INSTALL_HINT) from None
    model = Path(pocketsphinx.get_model_path()) / "en-us"
    if not (model / "en-us").is_dir() or not (model / "cmudict-en-us.dict").is_file():
        raise MissingComponentError(f"pocketsphinx's English model is missing (looked in {model})",
                                    hint=f"reinstall it: {INSTALL_HINT}")
    return pocketsphinx, model


class Recogniser:
    """pocketsphinx with a grammar of the distinct cue texts of one routine, shared by all its cues.

    The grammar has one alternative per distinct word sequence, so whatever
    the decoder hears is one of the routine's cues (or a partial path through
    one, when no cue fits the audio).  Cues with words missing from the
    model's dictionary, or whose reading is unknown, are left out and listed
    in `unchecked` with the reason.
    """

    def __init__(self, lengths: Mapping[str, int]):
        """`lengths`: each cue text and how long its clip lasts (ms)."""
        self._pocketsphinx, self._model = load_pocketsphinx()
        self._decoders = {False: self._decoder()}
        lookup = self._decoders[False].lookup_word
        self.phrases: dict[str, str] = {}  # cue text -> the words it is heard as
        self.unchecked: dict[str, str] = {}  # cue text -> why it cannot be checked
        self.shortest: dict[str, int] = {}  # words -> the shortest clip of a cue heard as them
        for text, ms in lengths.items():
            try:
                words = spoken_words(text)
            except Unspeakable as e:
                self.unchecked[text] = str(e)
                continue
            if not words:
                self.unchecked[text] = "no words to listen for"
                continue
            missing = [w for w in dict.fromkeys(words) if lookup(w) is None]
            if missing:
                listed = ", ".join(f"'{w}'" for w in missing)
                self.unchecked[text] = f"{listed} not in the recogniser's dictionary"
                continue
            phrase = " ".join(words)
            self.phrases[text] = phrase
            self.shortest[phrase] = min(ms, self.shortest.get(phrase, ms))
        self.alternatives = frozenset(self.phrases.values())
        self._searches: dict[tuple[bool, frozenset[str]], str] = {}

    def _decoder(self, wide: bool = False):
        d = self._pocketsphinx.Decoder(
            hmm=str(self._model / "en-us"), dict=str(self._model / "cmudict-en-us.dict"), lm=None,
            loglevel="FATAL",  # the library never prints; pocketsphinx logs to stderr by default
            # A grammar search needs neither later pass: without them it is
            # faster and, on the built-in routines, recognised as many cues.
            fwdflat=False, bestpath=False,
            **(WIDE_BEAMS if wide else {}))
        for word, phones in EXTRA_WORDS.items():
            if d.lookup_word(word) is None:
                d.add_word(word, phones, update=False)
        return d

    def hear(self, pcm: np.ndarray, start_ms: float, seed: int,
             without: frozenset[str] = frozenset(), wide: bool = False) -> Heard:
        """Decode `pcm` (int16 at 16 kHz, starting at track time `start_ms`) against the grammar.

        `without`: cues left out of the grammar for this decode; `wide`: with
        the wide beams.
        """
        rng = np.random.default_rng(seed)
        x = pcm.astype(np.float32) + rng.normal(0.0, DITHER_SIGMA, len(pcm)).astype(np.float32)
        x = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
        if wide not in self._decoders:
            self._decoders[wide] = self._decoder(wide)
        d = self._decoders[wide]
        d.activate_search(self._search(wide, without))
        d.start_utt()
        d.process_raw(x.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        words = hyp.hypstr.strip() if hyp is not None else ""
        spoken = [seg for seg in d.seg() if not seg.word.startswith(_FILLERS)] if words else []
        if not spoken:
            return Heard(words, None, 0, False)
        onset = round(start_ms + spoken[0].start_frame * FRAME_MS)
        span = (spoken[-1].end_frame + 1 - spoken[0].start_frame) * FRAME_MS
        return Heard(words, onset, span, words in self.alternatives - without)

    def _search(self, wide: bool, without: frozenset[str]) -> str:
        """The search for the grammar of every cue but `without`, made on first use."""
        key = (wide, without)
        name = self._searches.get(key)
        if name is None:
            name = f"cues{len(self._searches)}"
            alternatives = sorted(self.alternatives - without)
            grammar = "#JSGF V1.0;\ngrammar cues;\npublic <cue> = " + " | ".join(alternatives) + " ;\n"
            self._decoders[wide].add_jsgf_string(name, grammar)
            self._searches[key] = name
        return name
