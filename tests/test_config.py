"""Settings: the config file's checks and locations, and SPEC 3's precedence over every level."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from voiceflex import pipeline
from voiceflex.config import DEFAULTS, Settings, config_path, read_config
from voiceflex.errors import ConfigError, Location, RoutineError, UnknownVoiceError, UsageError
from voiceflex.routine.model import VoiceSettings

LANGUAGE_AT = Location("r.yaml", 2, 11)
ID_AT = Location("r.yaml", 3, 9)


def routine_voice(**given) -> VoiceSettings:
    """The voice of a routine file that sets exactly `given` (engine, id, rate)."""
    return VoiceSettings(**given, language="en-gb", location=ID_AT if "id" in given else LANGUAGE_AT,
                         given=frozenset(given), language_location=LANGUAGE_AT)


def settings(cli=None, file=None, tmp_path=Path("/cfg")) -> Settings:
    return Settings(cli or {}, file or {}, tmp_path / "config.toml",
                    {k: (i + 1, 1) for i, k in enumerate(file or {})})


# ---- precedence: command line > routine > config file > default -----------------------


@pytest.mark.parametrize("key, attr, values", [
    ("engine", "engine", ("espeak-ng", "pyttsx3", "piper")),
    ("rate", "rate", (300, 200, 100)),
])
def test_every_level_beats_the_one_below(key, attr, values):
    cli, routine, file = values
    default = DEFAULTS[key]
    assert getattr(settings().voice_for(routine_voice()), attr) == default
    assert getattr(settings(file={key: file}).voice_for(routine_voice()), attr) == file
    assert getattr(settings(file={key: file}).voice_for(routine_voice(**{attr: routine})), attr) == routine
    assert getattr(settings({key: cli}, {key: file}).voice_for(routine_voice(**{attr: routine})), attr) == cli
    # What a level does not set falls through to the one below.
    assert getattr(settings({"voice": "x"}, {key: file}).voice_for(routine_voice()), attr) == file


def test_voice_ids_beat_lower_levels_too():
    assert settings(file={"voice": "c"}).voice_for(routine_voice()).id == "c"
    assert settings(file={"voice": "c"}).voice_for(routine_voice(id="r")).id == "r"
    assert settings({"voice": "x"}, {"voice": "c"}).voice_for(routine_voice(id="r")).id == "x"


def test_an_engine_on_the_command_line_drops_the_routines_voice_id():
    # SPEC 3: `--engine piper` drops a routine's espeak voice id; the language picks the voice.
    voice = settings({"engine": "piper"}).voice_for(routine_voice(engine="espeak-ng", id="gmw/en-GB-x-rp"))
    assert (voice.engine, voice.id, voice.language) == ("piper", None, "en-gb")
    assert voice.location == LANGUAGE_AT  # a missing voice for the language is reported there


def test_a_routine_engine_drops_the_config_files_voice_id():
    voice = settings(file={"engine": "piper", "voice": "en_US-joe-medium"}).voice_for(
        routine_voice(engine="espeak-ng"))
    assert (voice.engine, voice.id) == ("espeak-ng", None)


def test_a_voice_id_goes_with_an_engine_chosen_at_its_level_or_below():
    # The config's voice with the config's engine.
    assert settings(file={"engine": "espeak-ng", "voice": "gmw/en"}).voice_for(routine_voice()).id == "gmw/en"
    # The routine's voice with the config's engine (chosen below it).
    voice = settings(file={"engine": "espeak-ng"}).voice_for(routine_voice(id="gmw/en"))
    assert (voice.engine, voice.id, voice.location) == ("espeak-ng", "gmw/en", ID_AT)
    # --voice with the routine's engine; no location: an unknown one is a usage error.
    voice = settings({"voice": "gmw/en"}).voice_for(routine_voice(engine="espeak-ng", id="gmw/en-us"))
    assert (voice.engine, voice.id, voice.location) == ("espeak-ng", "gmw/en", None)
    # --engine with --voice keeps both.
    voice = settings({"engine": "piper", "voice": "v"}).voice_for(routine_voice(engine="espeak-ng", id="r"))
    assert (voice.engine, voice.id) == ("piper", "v")


def test_a_config_voice_points_at_its_line(tmp_path):
    voice = settings(file={"rate": 120, "voice": "nope"}, tmp_path=tmp_path).voice_for(routine_voice())
    assert voice.location == Location(str(tmp_path / "config.toml"), 2, 1)


def test_where_each_choice_comes_from(tmp_path):
    s = settings({"rate": 200}, {"engine": "espeak-ng", "output": "/music"}, tmp_path)
    chosen = s.voice_choices(routine_voice(id="gmw/en"))
    assert [(c.value, c.source) for c in chosen.values()] == [
        ("espeak-ng", "config"), ("gmw/en", "routine"), (200, "cli")]
    assert s.describe(chosen["rate"]) == "command line (--rate)"
    assert s.describe(chosen["engine"]) == f"config {tmp_path / 'config.toml'}:1:1"
    assert s.describe(chosen["voice"], "r.yaml") == "routine r.yaml"
    assert s.describe(s.choice("bitrate")) == "default"
    assert (s.output, s.bitrate, s.music) == (Path("/music"), "64k", None)


def test_music_from_the_command_line_beats_the_routine_which_beats_the_config():
    assert settings().music_for(None) is None
    assert settings(file={"music": "rain"}).music_for(None) == "rain"
    assert settings(file={"music": "rain"}).music_for("drone") is None  # the routine's own bed stays
    assert settings({"music": "none"}, {"music": "rain"}).music_for("drone") == "none"


# ---- through the loader and the compiler, with the fake engine ------------------------


ROUTINE = """\
title: Settings
language: fr
voice: {engine: espeak-ng, id: fake/de, rate: 180}
steps:
  - say: Bonjour.
"""


def test_a_routine_voice_id_dropped_for_the_command_line_engine_is_a_located_error(tmp_path, fake_engine):
    f = tmp_path / "r.yaml"
    f.write_text(ROUTINE)
    planned = pipeline.plan(str(f), Settings(), engine=fake_engine)
    assert (planned.routine.voice.id, planned.routine.voice.rate) == ("fake/de", 180)
    # --engine drops fake/de; the fake engine has no French voice: reported at `language:`.
    with pytest.raises(RoutineError) as info:
        pipeline.plan(str(f), Settings({"engine": "pyttsx3"}), engine=fake_engine)
    assert str(info.value).startswith(f"{f}:2:11: fake has no voice for language \"fr\"")
    assert fake_engine.rendered == ["Bonjour."]  # rendered once, for the first plan


def test_an_unknown_voice_from_the_command_line_is_a_usage_error(tmp_path, fake_engine):
    f = tmp_path / "r.yaml"
    f.write_text(ROUTINE)
    with pytest.raises(UnknownVoiceError) as info:
        pipeline.plan(str(f), Settings({"voice": "fake/xx"}), engine=fake_engine)
    assert info.value.exit_code == 2 and not isinstance(info.value, RoutineError)


def test_validate_with_speech_finds_what_plan_finds_and_renders_nothing_for_broken_files(tmp_path, fake_engine):
    overlap = tmp_path / "overlap.yaml"
    overlap.write_text("title: x\nsteps:\n  - hold: 3s\n    halfway: A long cue that runs into the count.\n"
                       "    countdown: 1\n")
    assert pipeline.validate(str(overlap), engine=fake_engine)  # structure alone: fine
    with pytest.raises(RoutineError) as info:
        pipeline.validate(str(overlap), speech=True, engine=fake_engine)
    assert "runs into" in str(info.value) and str(info.value).startswith(f"{overlap}:4:14:")
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: x\nsteps:\n  - say: Fine words.\n  - pause: soon\n")
    fake_engine.rendered.clear()
    with pytest.raises(RoutineError):
        pipeline.validate(str(broken), speech=True, engine=fake_engine)
    assert fake_engine.rendered == []  # structural errors come before any synthesis


# ---- the config file: its checks and where each problem is -----------------------------


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert info.value.exit_code == 2
    return [str(d) for d in info.value.diagnostics]


def test_no_config_file_is_no_settings(tmp_path):
    assert read_config(tmp_path / "config.toml") == ({}, {})


def test_the_config_folder_can_be_moved_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEFLEX_CONFIG_DIR", str(tmp_path))
    assert config_path() == tmp_path / "config.toml"
    write(tmp_path, 'rate = 120\n')
    assert Settings.load(voice="x").file == {"rate": 120}


def test_good_values_are_read_and_normalised(tmp_path):
    (tmp_path / "bed.ogg").write_bytes(b"")
    path = write(tmp_path, '# mine\nengine = "espeak-ng"\nvoice = "gmw/en"\nrate = 180\n'
                           'output = "exports"\nbitrate = 96\nmusic = "bed.ogg"\n')
    values, places = read_config(path)
    assert values == {"engine": "espeak-ng", "voice": "gmw/en", "rate": 180, "output": str(tmp_path / "exports"),
                      "bitrate": "96k", "music": str(tmp_path / "bed.ogg")}
    assert places["engine"] == (2, 1) and places["music"] == (7, 1)
    for bed in ("brown-noise", "Rain", "drone", "none"):
        assert read_config(write(tmp_path, f'music = "{bed}"\n'))[0] == {"music": bed.lower()}


@pytest.mark.parametrize("text, expected", [
    ('rate = 160\nengine = piper\n', ':2:10: not valid TOML: invalid value; text goes in quotes'),
    ('rate = 160\n  engine "x"\n', ":2:10: not valid TOML: expected '=' after a key"),
    ('rate = 160\nrate = 170\n', ":2:11: not valid TOML: cannot overwrite a value; each key may be set once"),
    ('voice = "abc\n', ":1:13: not valid TOML: "),
    ('bitrate = [64,\n', ":1:15: not valid TOML: invalid value"),
    ('rate = ', ":1:8: not valid TOML: "),
])
def test_a_toml_syntax_error_is_located(tmp_path, text, expected):
    path = write(tmp_path, text)
    [message] = problems(path)
    assert message.startswith(f"{path}{expected}"), message
    assert ("quotes" in message) == ("quotes" in expected), message  # the hint only for an unquoted word


def test_every_bad_value_and_unknown_key_is_reported_at_its_line(tmp_path):
    path = write(tmp_path, 'rate = "fast"\n  engin = "pyttsx3"\nbitrate = "17k"\nmusic = "rian"\n'
                           'engine = "festival"\noutput = ""\n[voice]\nid = "x"\n')
    got = problems(path)
    # The engines listed are whatever voice.synthesis registers.
    assert got.pop(4).startswith(f"{path}:5:1: `engine`: unknown engine `festival` (engines: pyttsx3, espeak-ng")
    assert got == [
        f"{path}:1:1: `rate`: expected words per minute as a whole number, got text",
        f"{path}:2:3: unknown key `engin` in the config file; did you mean `engine`?",
        f"{path}:3:1: `bitrate`: bitrate '17k' is not one an MP3 at 22.05 kHz can have; use one of "
        "32k, 40k, 48k, 56k, 64k, 80k, 96k, 112k, 128k, 144k, 160k",
        f"{path}:4:1: `music`: no sound file {tmp_path / 'rian'}; did you mean `rain`? the built-in beds "
        'are brown-noise, rain, drone, and "none" plays none',
        f"{path}:6:1: `output`: expected a folder as text, got empty text",
        f"{path}:7:1: `voice`: expected a voice id as text, got a table",
    ]


@pytest.mark.parametrize("text, message", [
    ("rate = 79\n", "79 words per minute is out of range: must be from 80 to 400"),
    ("rate = true\n", "expected words per minute as a whole number, got `true`"),
    ("rate = 160.5\n", "got the number 160.5"),
    ('bitrate = "²k"\n', "bitrate '²k' is not one"),
    ("bitrate = 16\n", "too low"),
    ("voice = 3\n", "expected a voice id as text, got the number 3"),
])
def test_bad_values(tmp_path, text, message):
    [got] = problems(write(tmp_path, text))
    assert message in got


def test_a_config_that_is_not_utf8_or_huge_is_refused_with_its_place(tmp_path):
    path = write(tmp_path, b'rate = 160\nvoice = "\xff"\n')
    assert problems(path) == [f"{path}:2:10: the config file is not UTF-8 text; save it as UTF-8"]
    path = write(tmp_path, b"# x\n" * 20_000)
    assert "larger than" in problems(path)[0]
    (tmp_path / "folder").mkdir()
    assert "cannot read the config file" in problems(tmp_path / "folder")[0]


# ---- arguments: ASCII digits only, bounded ---------------------------------------------


@pytest.mark.parametrize("text", ["²", "①", "١٦٠", "160 ", "9" * 5000, "", "-160", "1e3"])
def test_rate_arguments_take_only_plain_numbers(text):
    from voiceflex.cli_options import words_per_minute

    if text == "160 ":
        assert words_per_minute(text) == 160
        return
    with pytest.raises(argparse.ArgumentTypeError):
        words_per_minute(text)


@pytest.mark.parametrize("text", ["²k", "①", "６４k", "9" * 5000 + "k", "64kk"])
def test_bitrates_take_only_plain_numbers(text):
    from voiceflex.audio.output_format import parse_bitrate

    with pytest.raises(UsageError):
        parse_bitrate(text)
    assert parse_bitrate(" 64K ") == 64


@pytest.mark.parametrize("text", ["²", "①", "9" * 5000, "0", "3"])
def test_from_takes_only_plain_chapter_numbers(text, tmp_path, fake_engine):
    from voiceflex.player import find_chapter

    f = tmp_path / "r.yaml"
    f.write_text("title: x\nsteps:\n  - name: One\n    say: One.\n  - name: Two\n    say: Two.\n")
    timeline = pipeline.plan(str(f), engine=fake_engine).timeline
    with pytest.raises(UsageError) as info:
        find_chapter(timeline, text)
    assert len(str(info.value)) < 120  # a 5000-digit argument is not echoed whole
    assert find_chapter(timeline, "2") == 1
