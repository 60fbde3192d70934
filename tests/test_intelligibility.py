"""`check`'s intelligibility measure with a fake Whisper: windows, word error rates, warnings, --strict."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from voiceflex.check import intelligibility as intel
from voiceflex.check.report import FAIL, PASS, WARNING
from voiceflex.errors import Location, MissingComponentError
from voiceflex.timeline import Event

RATE = 16_000
HERE = Location("r.yaml", 1, 1)


class FakeWhisper:
    """Answers from a script by the window it is given; records what it was given."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.windows: list[np.ndarray] = []

    def transcribe(self, audio, **options):
        assert options["initial_prompt"] is None and options["condition_on_previous_text"] is False
        self.windows.append(audio)
        text = self.answers.pop(0)

        class Segment:
            pass
        seg = Segment()
        seg.text = text
        return iter([seg]), None


def speech(start, end, text):
    return Event("speech", start, end, 0, HERE, text=text)


def tone(start, end):
    return Event("tone", start, end, 0, HERE, name="done", freq_hz=523.25)


def test_word_errors_count_substitutions_insertions_and_deletions():
    assert intel.word_errors("a b c".split(), "a b c".split()) == 0
    assert intel.word_errors("a b c".split(), "a x c".split()) == 1
    assert intel.word_errors("a b c".split(), "a c".split()) == 1
    assert intel.word_errors("a b".split(), "x a b y".split()) == 2
    assert intel.word_errors([], ["well"]) == 1


def test_contractions_compare_alike():
    assert intel.compared_words("When you're ready, don't rush.") == intel.compared_words(
        "When you are ready do not rush") == "when you are ready do not rush".split()
    assert intel.compared_words("Let's go. It's 3rd.") == "let us go it is third".split()


def test_each_window_is_padded_but_never_reaches_a_neighbours_speech_and_tones_are_muted():
    # Each part has its own sample value, so a window shows what it was cut from.
    pcm = np.zeros(5 * RATE, np.int16)
    pcm[int(0.5 * RATE):int(1.5 * RATE)] = 1000     # cue A 500..1500
    pcm[int(1.6 * RATE):int(2.0 * RATE)] = 2000     # a tone 1600..2000
    pcm[int(2.0 * RATE):int(3.0 * RATE)] = 3000     # cue B 2000..3000
    pcm[int(3.1 * RATE):int(4.0 * RATE)] = 4000     # cue C 3100..4000
    events = [speech(500, 1500, "Round 2."), tone(1600, 2000), speech(2000, 3000, "Hold"),
              speech(3100, 4000, "Forty-two")]
    fake = FakeWhisper(["Round two.", "Oh...", "42"])
    got = intel.transcribe_cues(events, pcm, intel.Listener(fake))
    a, b, c = fake.windows
    assert len(a) == pytest.approx((1750 - 250) * RATE / 1000, abs=1)  # 250 ms either side
    assert set(np.unique(a * 32768).round()) == {0, 1000}  # the tone in its tail muted
    assert len(b) == pytest.approx((3100 - 1750) * RATE / 1000, abs=1)  # up to C's start
    assert set(np.unique(b * 32768).round()) == {0, 3000}  # no A, no C, and the tone muted
    assert len(c) == pytest.approx((4250 - 3000) * RATE / 1000, abs=1)
    assert [(t.errors, t.words) for t in got] == [(0, 2), (1, 1), (0, 2)]


def test_the_routine_rate_is_all_errors_over_all_words_and_strict_fails_over_the_limit():
    good = [intel.Transcript("", 1, 10), intel.Transcript("", 0, 10)]
    bad = [intel.Transcript("", 4, 10), intel.Transcript("", 3, 10)]
    poor = [intel.Transcript("", 27, 100)]
    assert intel.routine_measure(good, strict=True).value == 5.0
    assert intel.routine_measure(good, strict=True).verdict == PASS
    assert intel.routine_measure(poor, strict=False).verdict == WARNING
    assert intel.routine_measure(poor, strict=True).verdict == WARNING  # between the two limits
    assert intel.routine_measure(bad, strict=False).verdict == WARNING
    assert intel.routine_measure(bad, strict=True).verdict == FAIL
    assert intel.routine_measure([None], strict=True).verdict == "unchecked"


def test_misheard_cues_and_fast_speech_are_warnings():
    events = [speech(0, 500, "Hold"), speech(1000, 2000, "Breathe in slowly")]
    heard = [intel.Transcript("Oh...", 1, 1), intel.Transcript("Breathe and slowly", 1, 3)]
    w = intel.warnings(events, heard, rate=160)
    assert [(x.label, x.message) for x in w] == [
        ("Hold", 'a listener may mishear it: a recogniser heard "Oh..." (100% of its words wrong)')]
    assert any("300 words a minute is fast" in x.message for x in intel.warnings(events, heard, rate=300))


def test_missing_faster_whisper_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(MissingComponentError) as info:
        intel.load_whisper()
    assert "faster_whisper is not installed" in str(info.value)
    assert info.value.hint == "pip install 'voiceflex[check]'"


def _row_for(cue, transcript):
    from voiceflex.check import _rows
    rows, _ = _rows([speech(1000, 1400, "Now.")], [cue], [transcript], [])
    return rows[0]


def test_a_look_alike_on_time_passes_unless_whisper_hears_the_look_alike_too():
    from voiceflex.check.cue_verdicts import CueResult
    grammar_says_no = CueResult("FAIL", 'heard "no" instead', "no", 1020, look_alike=True)
    row = _row_for(grammar_says_no, intel.Transcript("Now.", 0, 1))
    assert row.verdict == PASS and "+20 ms" in row.reason and row.details["wer"] == 0.0
    assert _row_for(grammar_says_no, intel.Transcript("Yeah.", 1, 1)).verdict == PASS
    assert _row_for(grammar_says_no, intel.Transcript("No.", 1, 1)).verdict == FAIL  # it is "no" there
    late = CueResult("FAIL", 'heard "no" instead', "no", 1020, look_alike=False)
    assert _row_for(late, intel.Transcript("Now.", 0, 1)).verdict == FAIL
