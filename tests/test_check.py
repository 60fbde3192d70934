"""`voiceflex check` without the recogniser: cue words, tone and glide detection, levels, alignment, the report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.audio.tones import synth
from voiceflex.check import cue_verdicts, cue_words, decoding, loudness_checks, recogniser, tone_checks
from voiceflex.check.report import Report, Row, SlotWarning
from voiceflex.errors import Location, MissingComponentError, UsageError, VoiceflexError
from voiceflex.routine.model import DEFAULT_TONES, ToneSpec
from voiceflex.timeline import Event

HERE = Location("test.yaml", 1, 1)


def speech_event(start_ms: int, end_ms: int, text: str) -> Event:
    return Event("speech", start_ms, end_ms, 0, HERE, text=text)


def tone_event(start_ms: int, end_ms: int, name: str, freq) -> Event:
    return Event("tone", start_ms, end_ms, 0, HERE, name=name, freq_hz=freq)


def track_with(length_ms: int, *sounds: tuple[int, np.ndarray]) -> np.ndarray:
    """An int16 track of `length_ms` with float sounds added at their start times (ms)."""
    x = np.zeros(ms_to_samples(length_ms), np.float64)
    for start_ms, sound in sounds:
        a = ms_to_samples(start_ms)
        x[a:a + len(sound)] += sound
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def sine(freq: float, ms: int, amplitude: float) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(ms_to_samples(ms)) / RATE)


# ---- the words a cue is heard as ------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("Round 1 of 2. Settle into the stretch.", "round one of two settle into the stretch"),
    ("Hold for 40 seconds. Breathe slowly.", "hold for forty seconds breathe slowly"),
    ("Do 1,000 reps, or 21.", "do one thousand reps or twenty one"),
    ("Rest 1.25 minutes", "rest one point two five minutes"),
    ("The 3rd round, the 21st time, the 2nd side", "the third round the twenty first time the second side"),
    ("About 80% & no more", "about eighty percent and no more"),
    ("Don\u2019t stop \u2014 ever", "don't stop ever"),
    ("Twenty-one... \"Caf\u00e9\"!", "twenty one cafe"),
])
def test_spoken_words_spell_out_what_espeak_reads(text, words):
    assert " ".join(cue_words.spoken_words(text)) == words


@pytest.mark.parametrize("text", ["left/right", "a = b", "#1", "x@y"])
def test_spoken_words_refuse_what_cannot_be_known(text):
    with pytest.raises(cue_words.Unspeakable):
        cue_words.spoken_words(text)


@pytest.mark.parametrize("text, said", [("Do it 3x", "do it three x"), ("a + b", "a plus b"),
                                        ("10000000 times", "ten million times")])
def test_spoken_words_know_what_the_normaliser_spelled_out(text, said):
    # The engine is given the normalised text, so its words are known.
    assert " ".join(cue_words.spoken_words(text)) == said


def test_missing_pocketsphinx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes `import pocketsphinx` fail
    with pytest.raises(MissingComponentError) as info:
        recogniser.load_pocketsphinx()
    assert info.value.hint == "pip install 'voiceflex[check]'"
    with pytest.raises(MissingComponentError):
        recogniser.Recogniser({"Hello.": 500})


def test_cli_without_pocketsphinx_says_how_to_install(monkeypatch, capsys, fake_engine, tmp_path):
    from voiceflex import pipeline
    from voiceflex.cli import main

    routine = tmp_path / "r.yaml"
    routine.write_text("title: R\nsteps:\n  - say: Hello there.\n  - tone: done\n")
    real_plan = pipeline.plan
    monkeypatch.setattr(pipeline, "plan", lambda ref, *args, **kw: real_plan(ref, *args, engine=fake_engine, **kw))
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    assert main(["check", str(routine)]) == 1
    err = capsys.readouterr().err
    assert "pocketsphinx is not installed" in err and "pip install 'voiceflex[check]'" in err
    assert "Traceback" not in err


# ---- steady tones ------------------------------------------------------------------------


def test_amplitude_of_a_sine_in_dbfs():
    assert tone_checks.amplitude_db(sine(880, 200, 1.0), 880) == pytest.approx(0.0, abs=0.05)
    assert tone_checks.amplitude_db(sine(880, 200, 0.1), 880) == pytest.approx(-20.0, abs=0.05)
    assert tone_checks.amplitude_db(sine(880, 200, 0.1), 1100) < -50


@pytest.mark.parametrize("name", ["start", "end", "switch", "tick", "done"])
def test_each_built_in_tone_is_found_where_planned_and_missed_where_cut(name):
    spec = DEFAULT_TONES[name]
    event = tone_event(1000, 1000 + spec.ms, name, spec.freq)
    present = track_with(3000, (1000, synth(spec, ms_to_samples(spec.ms))))
    assert tone_checks.check_steady(event, present).verdict == "pass"
    missing = track_with(3000)
    result = tone_checks.check_steady(event, missing)
    assert result.verdict == "FAIL" and result.reason.startswith("missing")


def test_a_tone_at_another_pitch_or_later_is_not_the_planned_tone():
    start, end = DEFAULT_TONES["start"], DEFAULT_TONES["end"]
    event = tone_event(1000, 1180, "start", start.freq)
    wrong_pitch = track_with(3000, (1000, synth(end, ms_to_samples(180))))
    assert tone_checks.check_steady(event, wrong_pitch).verdict == "FAIL"
    too_late = track_with(3000, (1500, synth(start, ms_to_samples(180))))
    assert tone_checks.check_steady(event, too_late).verdict == "FAIL"


def test_a_tone_stands_out_of_broadband_noise_and_noise_alone_does_not():
    rng = np.random.default_rng(1)
    spec = DEFAULT_TONES["start"]
    event = tone_event(500, 500 + spec.ms, "start", spec.freq)
    noise = rng.normal(0, 0.03, ms_to_samples(1500))  # about -30 dBFS, louder than a quiet room
    with_tone = track_with(1500, (0, noise), (500, synth(spec, ms_to_samples(spec.ms))))
    assert tone_checks.check_steady(event, with_tone).verdict == "pass"
    result = tone_checks.check_steady(event, track_with(1500, (0, noise)))
    assert result.verdict == "FAIL" and result.contrast_db < tone_checks.MIN_CONTRAST_DB


def test_a_tone_too_quiet_to_hear_is_missing_even_if_pure():
    event = tone_event(0, 300, "start", 880.0)
    faint = track_with(600, (0, sine(880, 300, 10 ** (-70 / 20))))
    result = tone_checks.check_steady(event, faint)
    assert result.verdict == "FAIL" and "dBFS" in result.reason


def test_tones_that_cannot_be_measured_are_unchecked():
    too_short = tone_event(0, 2, "blip", 880.0)
    assert tone_checks.check_steady(too_short, track_with(100)).verdict == "unchecked"
    too_high = tone_event(0, 200, "whistle", 12000.0)
    assert tone_checks.check_steady(too_high, track_with(300)).verdict == "unchecked"


def test_an_overlapping_tone_is_not_taken_for_background():
    # start (880 Hz) and a tone 3 semitones under it (740 Hz, a neighbour) at once
    a, b = ToneSpec(880.0, 300), ToneSpec(740.0, 300)
    events = [tone_event(0, 300, "a", 880.0), tone_event(0, 300, "b", 740.0)]
    mix = track_with(500, (0, synth(a, ms_to_samples(300))), (0, synth(b, ms_to_samples(300))))
    assert [r.verdict for r in tone_checks.check_tones(events, mix)] == ["pass", "pass"]


def test_audio_that_ends_early_fails_the_tones_after_it():
    events = [tone_event(5000, 5300, "end", 660.0)]
    assert tone_checks.check_tones(events, track_with(1000))[0].reason == "the audio ends before this tone"


# ---- glides ----------------------------------------------------------------------------------


def glide(name: str, ms: int) -> tuple[Event, np.ndarray]:
    spec = DEFAULT_TONES[name]
    return (tone_event(1000, 1000 + ms, name, (spec.freq, spec.freq_end)),
            synth(spec, ms_to_samples(ms)))


def test_inhale_rises_and_exhale_falls():
    for name, word in (("inhale", "rises"), ("exhale", "falls")):
        event, sound = glide(name, 4000)
        result = tone_checks.check_glide(event, track_with(6000, (1000, sound)), [])
        assert result.verdict == "pass" and result.reason.startswith(word), result
        lo, hi = sorted(event.freq_hz)
        assert lo * 0.95 < min(result.measured_hz) and max(result.measured_hz) < hi * 1.05


def test_a_glide_the_wrong_way_or_steady_fails():
    event, _ = glide("inhale", 4000)
    _, falling = glide("exhale", 4000)
    result = tone_checks.check_glide(event, track_with(6000, (1000, falling)), [])
    assert result.verdict == "FAIL" and "should rise" in result.reason
    steady = sine(400, 4000, 0.05)
    assert tone_checks.check_glide(event, track_with(6000, (1000, steady)), []).verdict == "FAIL"


def test_a_missing_glide_fails():
    event, _ = glide("exhale", 6000)
    result = tone_checks.check_glide(event, track_with(8000), [])
    assert result.verdict == "FAIL" and result.reason.startswith("missing")


def test_a_glide_under_its_breathing_cue_is_measured_around_the_cue():
    event, sound = glide("inhale", 4000)
    # "Breathe in" spoken over the first 0.7 s: a loud 150 Hz voice with harmonics in the band
    voice = sum(sine(150 * k, 700, 0.3 / k) for k in range(1, 6))
    audio = track_with(6000, (1000, sound), (1000, voice))
    assert tone_checks.check_glide(event, audio, [(1000, 1700)]).verdict == "pass"
    # spoken over the whole glide: nothing left to measure
    assert tone_checks.check_glide(event, audio, [(900, 5100)]).verdict == "unchecked"


# ---- levels and slots ----------------------------------------------------------------------


def verdicts(measures):
    return {m.name: m.verdict for m in measures}


def test_loudness_targets_of_spec_5():
    assert set(verdicts(loudness_checks.loudness_measures(-16.9, -1.0, 0)).values()) == {"pass"}
    assert verdicts(loudness_checks.loudness_measures(-17.1, -1.5, 0))["integrated loudness"] == "FAIL"
    assert verdicts(loudness_checks.loudness_measures(-15.0, -1.5, 0))["integrated loudness"] == "pass"
    assert verdicts(loudness_checks.loudness_measures(-16.0, -0.9, 0))["true peak"] == "FAIL"
    assert verdicts(loudness_checks.loudness_measures(-16.0, -1.5, 3))["clipped samples"] == "FAIL"


def test_alignment_targets():
    assert set(verdicts(loudness_checks.alignment_measures(0.0, 10_000, 10_000)).values()) == {"pass"}
    late = verdicts(loudness_checks.alignment_measures(50.1, 10_063.6, 10_000))
    assert late == {"start offset": "FAIL", "length vs plan": "FAIL"}
    assert verdicts(loudness_checks.alignment_measures(None, 10_000, 10_000))["start offset"] == "FAIL"


def test_clipped_samples_count_both_rails():
    x = np.array([0, 32767, -32768, -32767, 32766, 100], np.int16)
    assert loudness_checks.clipped_samples(x) == 3


def test_a_countdown_number_longer_than_its_second_fails():
    events = [speech_event(10_000, 10_400, "three"), speech_event(11_000, 11_300, "two"),
              speech_event(12_000, 13_200, "one"), tone_event(13_000, 13_320, "end", 660.0)]
    problems = loudness_checks.slot_problems(events)
    assert problems == {2: ("FAIL", "a countdown number lasting 1.20 s, longer than its second")}


def test_crowded_cues_warn_and_lone_numbers_are_not_countdowns():
    events = [speech_event(0, 1980, "Hold."), speech_event(2000, 3500, "seven"),
              speech_event(5000, 6000, "Rest.")]
    assert loudness_checks.slot_problems(events) == {0: ("warning", "only 20 ms before the next cue")}


def test_overlapping_speech_fails():
    events = [speech_event(0, 2500, "A long cue."), speech_event(2000, 3000, "Next.")]
    assert loudness_checks.slot_problems(events)[0][0] == "FAIL"


EBUR128_SUMMARY = """\
[Parsed_ebur128_0 @ 0x55d1c1d0b980] t: 312.3      TARGET:-23 LUFS    M: -71.2 S: -30.3     I: -16.0 LUFS
[Parsed_ebur128_0 @ 0x55d1c1d0b980] Summary:

  Integrated loudness:
    I:         -16.0 LUFS
    Threshold: -26.4 LUFS

  Loudness range:
    LRA:         7.0 LU
    Threshold: -37.9 LUFS
    LRA low:   -22.9 LUFS
    LRA high:  -15.9 LUFS

  True peak:
    Peak:       -1.7 dBFS
"""


def test_parse_ffmpeg_ebur128_summary():
    assert decoding.parse_ebur128(EBUR128_SUMMARY) == decoding.Loudness(-16.0, -1.7)
    silent = EBUR128_SUMMARY.replace("-16.0 LUFS\n    Threshold", "-70.0 LUFS\n    Threshold") \
        .replace("-1.7 dBFS", "-inf dBFS")
    assert decoding.parse_ebur128(silent) == decoding.Loudness(-70.0, float("-inf"))
    with pytest.raises(VoiceflexError):
        decoding.parse_ebur128("ffmpeg said something else\n")


# ---- alignment ------------------------------------------------------------------------------


def test_align_finds_an_mp3_style_delay_to_the_sample():
    rng = np.random.default_rng(3)
    # a track of bursts: like cues, with silence between them
    ref = np.zeros(RATE * 20, np.float32)
    for start in range(0, len(ref) - RATE, RATE):
        n = rng.integers(RATE // 4, RATE // 2)
        ref[start:start + n] = rng.normal(0, 3000, n)
    ref = ref.astype(np.int16)
    late = np.concatenate([np.zeros(1105, np.int16), ref])  # LAME's delay, not removed
    a = decoding.align(late, [ref[:30_000], ref[30_000:]], len(ref))
    assert a.offset_samples == 1105 and a.match > 0.9
    early = ref[441:]
    assert decoding.align(early, [ref], len(ref)).offset_samples == -441


def test_align_of_unrelated_audio_finds_no_offset():
    rng = np.random.default_rng(4)
    ref = (rng.normal(0, 3000, RATE * 5) * (np.arange(RATE * 5) % RATE < RATE // 3)).astype(np.int16)
    other = rng.normal(0, 3000, RATE * 5).astype(np.int16)
    a = decoding.align(other, [ref], len(ref))
    assert a.offset_samples is None and a.offset_ms is None


def test_an_audio_file_that_does_not_exist_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        decoding.decode(tmp_path / "nothing.mp3", tmp_path / "out.s16")


def test_missing_ffmpeg_says_how_to_install(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(MissingComponentError) as info:
        decoding.ffmpeg()
    assert "apt-get install ffmpeg" in info.value.hint


# ---- the report ---------------------------------------------------------------------------------


def report(rows, measures=None, warnings=()) -> Report:
    if measures is None:
        measures = loudness_checks.loudness_measures(-16.1, -1.6, 0)
    return Report("A routine", None, tuple(rows), tuple(measures), tuple(warnings), 1.234)


def row(kind: str, verdict: str, label: str = "x") -> Row:
    return Row(kind, 0, 100, label, verdict, "why", "r.yaml:1:1", {})


def test_summary_line_and_verdict():
    rows = [row("speech", "pass")] * 142 + [row("speech", "unchecked")] * 3 + [row("tone", "pass")] * 60
    r = report(rows)
    assert r.passed
    assert r.summary() == "142/145 speech cues recognised, 3 unchecked; 60/60 tones; -16.1 LUFS, -1.6 dBTP: PASS"


def test_any_failed_cue_tone_or_measure_fails_the_report():
    assert not report([row("speech", "pass"), row("tone", "FAIL")]).passed
    assert not report([row("speech", "FAIL"), row("tone", "pass")]).passed
    loud = loudness_checks.loudness_measures(-6.0, 0.0, 1234)
    r = report([row("speech", "pass")], loud)
    assert not r.passed
    assert r.summary() == "1/1 speech cues recognised; 0/0 tones; -6.0 LUFS, 0.0 dBTP, 1234 clipped samples: FAIL"


def test_summary_of_a_file_names_its_offset():
    measures = loudness_checks.loudness_measures(-16.0, -1.5, 0) + loudness_checks.alignment_measures(50.1, 10_063, 10_000)
    assert report([row("speech", "pass")], measures).summary().endswith("offset +50.1 ms: FAIL")
    unmatched = loudness_checks.loudness_measures(-16.0, -1.5, 0) + loudness_checks.alignment_measures(None, 10_000, 10_000)
    assert "no match with the plan" in report([], unmatched).summary()


def test_json_shape_matches_docs():
    jsonschema = pytest.importorskip("jsonschema")
    speech_row = Row("speech", 0, 2577, "Hello.", "pass", "recognised, -10 ms", "r.yaml:3:10",
                     {"heard": "hello", "heard_at_ms": -10, "transcript": "Hello.", "wer": 0.0})
    tone_row = Row("tone", 3000, 3180, "start", "FAIL", "missing: 880 Hz at -90 dBFS", "r.yaml:4:5",
                   {"freq_hz": 880.0, "level_dbfs": -90.0, "contrast_db": 1.5, "measured_hz": None})
    measures = loudness_checks.loudness_measures(-16.0, -1.5, 0) + loudness_checks.alignment_measures(0.0, 3500, 3500)
    data = report([speech_row, tone_row], measures, [SlotWarning(0, "Hello.", "only 20 ms before the next cue")]) \
        .to_json()
    counts = {"type": "object", "required": ["total", "passed", "failed", "unchecked"],
              "properties": {k: {"type": "integer"} for k in ("total", "passed", "failed", "unchecked")}}
    verdict = {"enum": ["pass", "FAIL", "unchecked"]}
    schema = {
        "type": "object",
        "required": ["title", "audio", "passed", "summary", "speech", "tones", "measures", "events",
                     "warnings", "seconds"],
        "properties": {
            "audio": {"type": ["string", "null"]}, "passed": {"type": "boolean"},
            "summary": {"type": "string"}, "speech": counts, "tones": counts, "seconds": {"type": "number"},
            "measures": {"type": "array", "items": {
                "type": "object", "required": ["name", "value", "unit", "verdict", "target"],
                "properties": {"value": {"type": ["number", "null"]},
                               "verdict": {"enum": ["pass", "FAIL", "warning", "unchecked"]}}}},
            "events": {"type": "array", "items": {"oneOf": [
                {"type": "object", "required": ["kind", "start_ms", "end_ms", "text", "verdict", "reason", "source",
                                                "heard", "heard_at_ms", "transcript", "wer"],
                 "properties": {"kind": {"const": "speech"}, "verdict": verdict}},
                {"type": "object", "required": ["kind", "start_ms", "end_ms", "name", "verdict", "reason", "source",
                                                "freq_hz", "level_dbfs", "contrast_db", "measured_hz"],
                 "properties": {"kind": {"const": "tone"}, "verdict": verdict}},
            ]}},
            "warnings": {"type": "array", "items": {"type": "object", "required": ["start_ms", "text", "message"]}},
        },
    }
    jsonschema.validate(data, schema)
    assert data["passed"] is False and data["tones"] == {"total": 1, "passed": 0, "failed": 1, "unchecked": 0}
    assert data["events"][0]["text"] == "Hello." and data["events"][1]["name"] == "start"


def test_docs_describe_every_top_level_key():
    docs = (Path(__file__).parents[1] / "docs" / "check.md").read_text()
    keys = report([]).to_json().keys()
    assert all(f"`{k}`" in docs or f'"{k}"' in docs for k in keys)
