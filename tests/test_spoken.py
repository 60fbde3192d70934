"""The text normaliser in front of every engine, `{duration}`, and cues no voice can speak."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voiceflex import pipeline
from voiceflex.errors import RoutineError
from voiceflex.routine.durations import duration_words
from voiceflex.spoken import has_words, normalise, number_words, ordinal_words, words


@pytest.mark.parametrize("text, said", [
    ("Hold for 30 seconds.", "Hold for thirty seconds."),
    ("1.5 seconds", "one point five seconds"),
    ("Round 2 of 12", "Round two of twelve"),
    ("the 1st, 2nd, 3rd and 21st", "the first, second, third and twenty-first"),
    ("1,000 breaths", "one thousand breaths"),
    ("at 5:30 or 7:05, not 12:00", "at five thirty or seven oh five, not twelve o'clock"),
    ("50% & 90°", "fifty percent and ninety degrees"),
    ("code 007", "code zero zero seven"),
    ("3x", "three x"),
    ("1 minute 30 seconds", "one minute thirty seconds"),
    ("Breathe\u200b in\u00ad  slowly 🧘\u200d♀️ now", "Breathe in slowly now"),
    ("Tag\U000e0041 and\ue000 joiner\u2060s", "Tag and joiners"),
    ("-", ""),
    ("\u200b", ""),
])
def test_normalise_speaks_numbers_as_words_and_drops_what_nothing_speaks(text, said):
    assert normalise(text) == said


def test_other_languages_keep_their_digits():
    assert normalise("Noch 30 Sekunden 🙂", "de") == "Noch 30 Sekunden"


def test_number_words():
    assert [number_words(n) for n in (0, 15, 40, 99, 101, 1500, 2_000_001)] == [
        "zero", "fifteen", "forty", "ninety-nine", "one hundred one", "one thousand five hundred",
        "two million one"]
    assert [ordinal_words(n) for n in (1, 12, 20, 40, 103)] == [
        "first", "twelfth", "twentieth", "fortieth", "one hundred third"]


def test_words_compare_both_sides_alike():
    assert words("Round 2 of 3. Kneel—left!") == ["round", "two", "of", "three", "kneel", "left"]
    assert words("Forty-two") == words("42") == ["forty", "two"]
    assert words("Don't stop.") == ["don't", "stop"]


def test_has_words():
    assert not any(has_words(t) for t in ("-", ".", "—", "\u200b", "\u00ad", "\u2060", "\ue000", "\U000e0041",
                                          "🙂", "…"))
    assert all(has_words(t) for t in ("a", "3", "é", "Ω 🙂"))


@pytest.mark.parametrize("ms, said", [(45_000, "45 seconds"), (120_000, "2 minutes"),
                                      (90_000, "1 minute 30 seconds"), (1000, "1 second"),
                                      (61_000, "1 minute 1 second"), (1500, "1.5 seconds"),
                                      (3_600_000, "1 hour")])
def test_duration_words(ms, said):
    assert duration_words(ms) == said


def _routine(tmp_path, body: str):
    path = tmp_path / "r.yaml"
    path.write_text("title: T\nsteps:\n" + body, encoding="utf-8")
    return str(path)


def test_engines_get_normalised_text_and_alike_texts_share_a_clip(tmp_path, fake_engine):
    ref = _routine(tmp_path, '  - say: "Hold 30 seconds."\n  - say: "Hold thirty seconds."\n'
                             '  - say: "Hold 30\u200b seconds. 🙂"\n')
    plan = pipeline.plan(ref, engine=fake_engine)
    assert fake_engine.rendered == ["Hold thirty seconds."]
    texts = [e.text for e in plan.timeline.events]
    assert texts == ["Hold 30 seconds.", "Hold thirty seconds.", "Hold 30\u200b seconds. 🙂"]  # the author's words
    assert len({e.end_ms - e.start_ms for e in plan.timeline.events}) == 1


def test_stripped_characters_are_a_located_warning(tmp_path, fake_engine):
    ref = _routine(tmp_path, '  - say: "Breathe in 🧘 slowly."\n  - say: Fine.\n')
    timeline = pipeline.validate(ref)
    assert [str(w) for w in timeline.warnings] == [
        f'{ref}:3:10: U+1F9D8 PERSON IN LOTUS POSITION cannot be spoken and is left out of "Breathe in 🧘 slowly."']
    assert pipeline.plan(ref, engine=fake_engine).timeline.warnings == timeline.warnings


def test_nothing_speakable_is_an_error_before_any_synthesis(tmp_path, fake_engine):
    ref = _routine(tmp_path, '  - say: Fine.\n  - sides: ["\u2060", right]\n    steps:\n      - say: "{side}"\n')
    with pytest.raises(RoutineError) as info:
        pipeline.plan(ref, engine=fake_engine)
    assert [str(d) for d in info.value.diagnostics] == [
        f"{ref}:4:13: side name '\\u2060' has nothing a voice can speak (`{{side}}` says it); name the side in words"]
    assert fake_engine.rendered == []


def test_cli_prints_warnings_to_stderr_located(tmp_path):
    ref = _routine(tmp_path, '  - say: "Stand 🙂 tall."\n')
    result = subprocess.run([sys.executable, "-m", "voiceflex", "validate", ref], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f'{ref}:3:10: warning: U+1F642 SLIGHTLY SMILING FACE cannot be spoken and is left '
                             f'out of "Stand 🙂 tall."\n')
    assert result.stdout.startswith(f"{ref}: ok")
