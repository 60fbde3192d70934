"""The voice layer with the real pyttsx3 and espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from voiceflex.errors import UsageError
from voiceflex.routine.model import VoiceSettings
from voiceflex.voice import Clip, VoiceCache, get_engine, list_voices, pyttsx3_engine, synthesize
from voiceflex.voice.workers import WorkerPool

pytestmark = pytest.mark.integration

CUES = ["Breathe in", "Hold", "Switch sides.", "Kneel on your left knee."]


class Counting:
    """Wraps an engine and counts the texts it renders."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name
        self.rendered: list[str] = []

    @property
    def version(self):
        return self.engine.version

    def voices(self):
        return self.engine.voices()

    def render(self, texts, voice, rate, *, workers=1):
        for text, clip in self.engine.render(texts, voice, rate, workers=workers):
            self.rendered.append(text)
            yield text, clip


def assert_speech(clip: Clip, low_s: float, high_s: float):
    assert clip.rate == 22050
    assert clip.samples.dtype == np.int16 and clip.samples.ndim == 1
    assert low_s * 1000 <= clip.ms <= high_s * 1000
    # Trimmed: speech right at both ends, and loud enough to be speech.
    assert clip.samples[0] != 0 and clip.samples[-1] != 0
    assert np.abs(clip.samples).max() > 3000


@pytest.mark.parametrize("engine_name", ["pyttsx3", "espeak-ng"])
def test_real_cues_have_plausible_lengths(engine_name):
    clips = synthesize(CUES, VoiceSettings(engine=engine_name))
    assert list(clips) == CUES
    assert_speech(clips["Breathe in"], 0.4, 2.5)
    assert_speech(clips["Hold"], 0.2, 1.5)
    assert_speech(clips["Kneel on your left knee."], 0.8, 4.0)
    assert clips["Kneel on your left knee."].ms > clips["Hold"].ms


@pytest.mark.parametrize("engine_name", ["pyttsx3", "espeak-ng"])
def test_second_call_is_served_from_the_cache(engine_name):
    settings = VoiceSettings(engine=engine_name)
    first = synthesize(CUES, settings)
    engine = Counting(get_engine(settings))
    second = synthesize(CUES, settings, engine=engine)
    assert engine.rendered == []
    for text in CUES:
        assert np.array_equal(first[text].samples, second[text].samples)


def test_espeak_cli_is_byte_deterministic(tmp_path):
    settings = VoiceSettings(engine="espeak-ng")
    texts = ["Breathe in", "Hold for thirty seconds."]
    a = synthesize(texts, settings, cache=VoiceCache(tmp_path / "a"))
    b = synthesize(texts, settings, cache=VoiceCache(tmp_path / "b"))
    for text in texts:
        assert a[text].samples.tobytes() == b[text].samples.tobytes()


def test_espeak_cli_reads_markup_and_dashes_as_text(tmp_path):
    texts = ["-v xx", "[[h@'loU]] and <b>bold</b>"]
    clips = synthesize(texts, VoiceSettings(engine="espeak-ng"))
    assert all(clip.ms > 300 for clip in clips.values())


@pytest.mark.parametrize("engine_name", ["pyttsx3", "espeak-ng"])
def test_voices_include_american_english(engine_name):
    voices = {v.id: v for v in list_voices(engine_name)}
    assert "en-us" in voices["gmw/en-us"].languages
    assert get_engine(engine_name).version


def test_unknown_voice_id_is_refused_with_the_closest():
    with pytest.raises(UsageError, match="did you mean gmw/en-us"):
        synthesize(["Hold"], VoiceSettings(id="gmw/en-uss"))


def test_voice_and_rate_are_applied():
    slow = synthesize(["Breathe in slowly and deeply."], VoiceSettings(rate=100))
    fast = synthesize(["Breathe in slowly and deeply."], VoiceSettings(rate=300))
    german = synthesize(["Breathe in slowly and deeply."], VoiceSettings(language="de"))
    text = "Breathe in slowly and deeply."
    assert slow[text].ms > 1.8 * fast[text].ms
    assert not np.array_equal(german[text].samples[:5000], slow[text].samples[:5000])


def test_two_hundred_short_cues_none_empty():
    texts = [f"{word} {n}" for n in range(50) for word in ("Hold", "Breathe in", "Switch", "Rest")]
    clips = synthesize(texts, VoiceSettings(), workers=2)
    assert len(clips) == 200
    assert min(clip.ms for clip in clips.values()) > 250
    assert all(np.abs(clip.samples).max() > 1000 for clip in clips.values())


def test_library_prints_nothing(capfd):
    synthesize(["Audio saved nowhere"], VoiceSettings())
    synthesize(["Audio saved nowhere"], VoiceSettings(engine="espeak-ng"))
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_engine_info_is_remembered_per_installation(monkeypatch, tmp_path):
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path))
    calls = []
    real_pool = pyttsx3_engine.WorkerPool

    class CountingPool(real_pool):
        def call(self, *args):
            calls.append(args)
            return super().call(*args)

    monkeypatch.setattr(pyttsx3_engine, "WorkerPool", CountingPool)
    first = get_engine("pyttsx3")
    assert first.version and first.voices()
    second = get_engine("pyttsx3")
    assert (second.version, second.voices()) == (first.version, first.voices())
    assert len(calls) == 1, "the second engine read the remembered answer"
    assert list(tmp_path.glob("pyttsx3-info-*.json"))


# ---- pyttsx3: the same bytes whatever the worker was asked before ----------------------------------

PROBE = "helpers.espeak_probe:Probe"
OTHERS = ["Breathe in", "Hold it. Breathe out slowly.", "Switch sides.", "Kneel on your left knee.",
          "Relax your jaw and shoulders.", "Round 2 of 3.", "Well done."]


def test_a_cue_is_the_same_bytes_whatever_its_worker_spoke_before():
    target = "Three."
    with WorkerPool(PROBE) as first, WorkerPool(PROBE) as later:
        fresh = first.call("render", target, "gmw/en-us", 160)
        for text in OTHERS:
            later.call("render", text, "gmw/en-us", 160)
        assert later.call("render", target, "gmw/en-us", 160) == fresh
        # The test can tell: spoken by the worker itself, after the others, it comes out otherwise.
        for text in OTHERS:
            later.call("render_in_place", text, "gmw/en-us", 160)
        assert later.call("render_in_place", target, "gmw/en-us", 160) != fresh
        assert later.call("render", target, "gmw/en-us", 160) != fresh  # every child inherits that


def test_cues_handed_out_in_any_order_to_any_number_of_workers_give_the_same_bytes():
    engine = get_engine("pyttsx3")
    texts = [*OTHERS, "Three.", "Hold.", "Find a quiet space with room to lie down."]
    runs = []
    for order, workers in ((texts, 1), (texts[::-1], 2), (texts[3:] + texts[:3], 2)):
        runs.append({t: c.samples.tobytes() for t, c in engine.render(order, "gmw/en-us", 160, workers=workers)})
    assert runs[0] == runs[1] == runs[2]


def test_a_pyttsx3_worker_imports_only_what_speaking_needs():
    # Each cue forks the worker, and a fork costs about in proportion to the
    # memory the worker has written: these would double it.
    with WorkerPool(PROBE) as pool:
        modules = set(pool.call("modules"))
    assert "pyttsx3.drivers._espeak" in modules
    assert not modules & {"numpy", "multiprocessing", "importlib.metadata", "subprocess", "tempfile",
                          "voiceflex.voice.workers", "voiceflex.files", "voiceflex.errors"}


def test_the_engine_version_names_pyttsx3_libespeak_and_the_fresh_state(monkeypatch, tmp_path):
    # Part of every cache key: the same string as before it was put together outside the worker.
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path))
    import re
    from importlib import metadata

    pattern = rf"pyttsx3 {re.escape(metadata.version('pyttsx3'))}, libespeak-ng [0-9][^,]*, fresh state per cue"
    assert re.fullmatch(pattern, get_engine("pyttsx3").version)
