"""The piper engine without a model: rate mapping, sentence joining, voice discovery, workers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from voiceflex.audio.rate import RATE
from voiceflex import pipeline
from voiceflex.errors import EngineError, RoutineError, UnknownVoiceError
from voiceflex.routine.model import VoiceSettings
from voiceflex.voice import piper_engine, piper_voices, resolve_voice, trim_silence
from voiceflex.voice.pyttsx3_worker import _in_child

CONFIG = {
    "audio": {"sample_rate": 22050, "quality": "low"},
    "espeak": {"voice": "en-gb-x-rp"},
    "language": {"code": "en_GB", "family": "en", "name_english": "English",
                 "country_english": "Great Britain"},
    "dataset": "alba",
}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty user data folder, and no bundled voice: only what a test puts there is installed."""
    monkeypatch.setenv("VOICEFLEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(piper_voices, "BUNDLED_PACKAGE", "no_such_voice_package")
    folder = tmp_path / "data" / "piper-voices"
    folder.mkdir(parents=True)
    return folder


def add_voice(folder: Path, name: str, config: dict | str | None = CONFIG, model: bytes = b"model") -> None:
    (folder / f"{name}.onnx").write_bytes(model)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / f"{name}.onnx.json").write_text(text)


# ---- rate -> length_scale ----------------------------------------------------------------------


def test_rate_160_is_the_calibrated_length_scale_and_faster_is_shorter():
    assert piper_engine.length_scale(160) == pytest.approx(1.31)
    scales = [piper_engine.length_scale(r) for r in range(80, 401, 10)]
    assert all(a > b > 0 for a, b in zip(scales, scales[1:]))
    assert piper_engine.length_scale(80) == pytest.approx(2 * 1.619 - 0.309)


@pytest.mark.parametrize("rate", [79, 401])
def test_rates_outside_the_routine_range_are_refused(rate):
    with pytest.raises(ValueError, match="80..400"):
        piper_engine.length_scale(rate)


# ---- sentences -----------------------------------------------------------------------------------


def speech(n: int, level: int = 9000) -> np.ndarray:
    return np.full(n, level, dtype=np.int16)


def test_sentences_are_trimmed_of_faint_padding_and_joined_by_the_pause():
    faint = np.array([3, -5, 16, -16, 0], dtype=np.int16)  # all within QUIET
    a = np.concatenate([faint, speech(100), np.array([17], np.int16), faint])
    b = np.concatenate([faint, speech(50, -9000), faint])
    joined = piper_engine.join_sentences([a, b], RATE)
    pause = round(piper_engine.SENTENCE_PAUSE_MS * RATE / 1000)
    assert len(joined) == 101 + pause + 50
    assert joined[100] == 17 and not joined[101 : 101 + pause].any()
    assert (joined[-50:] == -9000).all()


def test_a_silent_sentence_adds_no_pause_and_all_silent_is_nothing():
    silent = np.array([1, 2, -3], dtype=np.int16)
    assert len(piper_engine.join_sentences([silent, speech(10), silent], RATE)) == 10
    assert piper_engine.join_sentences([silent], RATE).size == 0


def test_trim_silence_keeps_exact_zero_trimming_by_default():
    samples = np.array([0, 0, 1, 0, 5, 0], dtype=np.int16)
    assert trim_silence(samples).tolist() == [1, 0, 5]
    assert trim_silence(samples, 1).tolist() == [5]


def test_a_voice_at_16_khz_is_resampled_to_the_mixing_rate():
    t = np.arange(16000) / 16000
    tone = np.round(10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = piper_engine.resample(tone, 16000)
    assert len(out) == RATE and out.dtype == np.int16
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) == 440  # 1 s long: bin i is i Hz
    assert np.abs(out).max() == pytest.approx(10000, rel=0.02)


# ---- voices ----------------------------------------------------------------------------------


def test_user_voices_are_found_by_file_name_with_normalised_languages(data_dir):
    add_voice(data_dir, "en_GB-alba-low")
    add_voice(data_dir, "no-settings", config=None)
    add_voice(data_dir, "broken", config="{not json")
    [voice] = piper_voices.find_voices()
    assert voice.id == "en_GB-alba-low"
    assert voice.languages == ("en-gb-x-rp", "en-gb", "en")
    assert voice.name == "alba (English, Great Britain, low)"
    assert voice.model == data_dir / "en_GB-alba-low.onnx"


def test_the_bundled_voice_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEFLEX_DATA_DIR", str(tmp_path))
    (tmp_path / "piper-voices").mkdir()
    add_voice(tmp_path / "piper-voices", "zz")
    ids = [v.id for v in piper_voices.find_voices()]
    assert ids == ["en_US-joe-medium", "zz"]


def test_voices_are_chosen_by_id_or_language_and_unknown_ids_are_refused(data_dir):
    add_voice(data_dir, "en_GB-alba-low")
    add_voice(data_dir, "de_DE-thorsten-low", {**CONFIG, "espeak": {"voice": "de"},
                                                "language": {"code": "de_DE", "family": "de"}})
    voices = piper_engine.PiperEngine().voices()
    assert resolve_voice(voices, VoiceSettings(language="de-de"), "piper") == "de_DE-thorsten-low"
    assert resolve_voice(voices, VoiceSettings(language="en-us"), "piper") == "en_GB-alba-low"  # family
    with pytest.raises(UnknownVoiceError, match='did you mean en_GB-alba-low'):
        resolve_voice(voices, VoiceSettings(id="en_GB-alba-lo"), "piper")


def test_the_models_digest_follows_file_contents_and_is_remembered(data_dir):
    add_voice(data_dir, "a", model=b"one")
    first = piper_voices.models_digest(piper_voices.find_voices())
    assert piper_voices.models_digest(piper_voices.find_voices()) == first
    memo = json.loads((piper_voices.default_cache_dir() / "piper-digests.json").read_text())
    assert len(memo) == 2  # the model and its settings
    add_voice(data_dir, "a", model=b"two")
    os.utime(data_dir / "a.onnx", ns=(1, 1))
    assert piper_voices.models_digest(piper_voices.find_voices()) != first


def test_the_engine_version_names_what_can_change_the_audio(data_dir):
    add_voice(data_dir, "a")
    version = piper_engine.PiperEngine().version
    for part in ("piper-tts ", "onnxruntime ", "models ", "noise 0/0", "pause 350 ms"):
        assert part in version


# ---- the engine with a fake model in real worker processes ---------------------------------------


@pytest.fixture
def fake_backend(data_dir, tmp_path, monkeypatch):
    add_voice(data_dir, "fake-voice")
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv("FAKE_PIPER_LOG", str(log))
    monkeypatch.setattr(piper_engine, "BACKEND", "helpers.fake_piper_worker:FakePiperWorker")
    return log


def test_render_joins_the_sentences_of_each_cue_in_worker_processes(fake_backend, data_dir):
    texts = ["One. Two words", "Hold", "[[h@l'oU]] as text"]
    clips = dict(piper_engine.PiperEngine().render(texts, "fake-voice", 200, workers=2))
    assert sorted(clips) == sorted(texts)
    pause = round(piper_engine.SENTENCE_PAUSE_MS * RATE / 1000)
    per_char = 40 * 22050 // 1000
    assert len(clips["One. Two words"].samples) == 3 * per_char + pause + 9 * per_char
    assert len(clips["Hold"].samples) == 4 * per_char
    requests = [json.loads(line) for line in fake_backend.read_text().splitlines()]
    spoken = {r[0] for r in requests}
    assert "[\u200b[h@l'oU]] as text" in spoken  # phoneme markup is read as words
    assert {tuple(r[3]) for r in requests} == {(piper_engine.length_scale(200), 0.0, 0.0)}
    assert {r[1] for r in requests} == {str(data_dir / "fake-voice.onnx")}


def test_a_voice_at_another_rate_comes_back_at_the_mixing_rate(fake_backend, monkeypatch):
    monkeypatch.setenv("FAKE_PIPER_RATE", "16000")
    [(_, clip)] = piper_engine.PiperEngine().render(["Hold"], "fake-voice", 160)
    assert clip.rate == RATE and len(clip.samples) == round(4 * 882 * RATE / 16000)


def test_a_worker_that_dies_on_a_cue_is_an_error_naming_it(fake_backend):
    with pytest.raises(EngineError, match='could not speak "crash"') as caught:
        dict(piper_engine.PiperEngine(timeout=20).render(["Hold", "crash"], "fake-voice", 160, workers=2))
    assert caught.value.cue == "crash"


# ---- pyttsx3: every request in a fresh child ------------------------------------------------------

_STATE: list[int] = []


def _remember(n: int) -> list[int]:
    _STATE.append(n)
    return list(_STATE)


def test_each_child_starts_from_the_workers_untouched_state():
    assert _in_child(_remember, 1) == [1]
    assert _in_child(_remember, 2) == [2]  # not [1, 2]: the first child's change died with it
    assert _STATE == []


def test_a_childs_exception_and_its_crash_are_raised_in_the_worker():
    with pytest.raises(RuntimeError, match="ValueError: no"):
        _in_child(_raise, ValueError("no"))
    with pytest.raises(RuntimeError, match="killed by SIGKILL"):
        _in_child(_die)


def _raise(e: Exception) -> None:
    raise e


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_an_unknown_piper_voice_in_a_routine_is_an_error_at_its_line(data_dir, tmp_path):
    add_voice(data_dir, "en_GB-alba-low")
    routine = tmp_path / "r.yaml"
    routine.write_text("title: T\nvoice:\n  engine: piper\n  id: en_GB-alba-lo\nsteps:\n  - say: Hello.\n")
    with pytest.raises(RoutineError) as caught:
        pipeline.plan(str(routine))
    message = str(caught.value)
    assert f"{routine}:4:" in message and "did you mean en_GB-alba-low" in message


def test_a_cue_the_model_speaks_as_silence_is_an_error_naming_it(fake_backend):
    with pytest.raises(EngineError, match='could not speak ". ": piper produced no sound') as caught:
        dict(piper_engine.PiperEngine().render([". "], "fake-voice", 160))
    assert caught.value.cue == ". "
