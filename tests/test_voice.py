"""Unit tests of the voice layer; no espeak needed (workers run a misbehaving fake backend)."""

from __future__ import annotations

import os
import signal
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import FAKE_RATE, FakeEngine, fake_clip, fake_ms

from voiceflex.errors import EngineError, MissingComponentError, UsageError
from voiceflex.routine.model import VoiceSettings
from voiceflex.voice import (
    Clip,
    VoiceCache,
    VoiceInfo,
    espeak_cli,
    get_engine,
    pyttsx3_engine,
    resolve_voice,
    synthesize,
)
from voiceflex.voice import cache as cache_module
from voiceflex import files
from voiceflex.files import default_cache_dir
from voiceflex.voice.engine import trim_silence
from voiceflex.voice.workers import WorkerPool

SETTINGS = VoiceSettings()


def clip_of(values: list[int], rate: int = FAKE_RATE) -> Clip:
    return Clip(np.array(values, dtype=np.int16), rate)


# --- Clip and trimming ------------------------------------------------------


def test_clip_ms_rounds_to_the_nearest_millisecond():
    assert clip_of([1] * 22050).ms == 1000
    assert clip_of([1] * 33).ms == 1  # 1.497 ms
    assert clip_of([1] * 34).ms == 2  # 1.542 ms
    assert clip_of([]).ms == 0


def test_clip_refuses_anything_but_mono_int16():
    with pytest.raises(ValueError):
        Clip(np.zeros(10, dtype=np.float32), 22050)
    with pytest.raises(ValueError):
        Clip(np.zeros((10, 2), dtype=np.int16), 22050)


def test_trim_silence_cuts_exact_zeros_at_the_ends_only():
    samples = np.array([0, 0, 5, 0, -3, 1, 0, 0, 0], dtype=np.int16)
    assert trim_silence(samples).tolist() == [5, 0, -3, 1]
    assert trim_silence(np.zeros(100, dtype=np.int16)).size == 0
    assert trim_silence(np.array([1, 2], dtype=np.int16)).tolist() == [1, 2]


# --- choosing a voice ---------------------------------------------------------

VOICES = FakeEngine().voices()


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en-us", "fake/en-us"),  # declared language
        ("EN-US", "fake/en-us"),
        ("en-gb", "fake/en"),  # declared language of a voice named otherwise
        ("en", "fake/en"),  # the voice's file name
        ("de-at", "fake/de"),  # falls back to the primary language
    ],
)
def test_default_voice_follows_language(language, expected):
    assert resolve_voice(VOICES, VoiceSettings(language=language), "fake") == expected


def test_language_without_a_voice_is_a_usage_error():
    with pytest.raises(UsageError, match='no voice for language "fr"'):
        resolve_voice(VOICES, VoiceSettings(language="fr"), "fake")


def test_voice_id_is_matched_without_regard_to_case():
    assert resolve_voice(VOICES, VoiceSettings(id="FAKE/EN-US"), "fake") == "fake/en-us"


def test_unknown_voice_id_names_the_closest_ones():
    with pytest.raises(UsageError) as raised:
        resolve_voice(VOICES, VoiceSettings(id="fake/en-su"), "fake")
    assert 'no voice "fake/en-su"' in str(raised.value)
    assert "did you mean fake/en-us" in str(raised.value)
    assert "voiceflex voices" in (raised.value.hint or "")


# --- the cache ---------------------------------------------------------------

KEY_PARTS = {
    "text": "Breathe in",
    "engine": "pyttsx3",
    "engine_version": "2.99",
    "voice": "gmw/en-us",
    "rate": 160,
}


@pytest.mark.parametrize(
    ("part", "other"),
    [
        ("text", "Breathe out"),
        ("engine", "espeak-ng"),
        ("engine_version", "2.100"),
        ("voice", "gmw/en"),
        ("rate", 161),
    ],
)
def test_cache_key_changes_with_each_part(part, other):
    key = VoiceCache.key(**KEY_PARTS)
    assert VoiceCache.key(**KEY_PARTS) == key
    assert VoiceCache.key(**{**KEY_PARTS, part: other}) != key


def test_cache_key_changes_with_the_format_version(monkeypatch):
    key = VoiceCache.key(**KEY_PARTS)
    monkeypatch.setattr(cache_module, "FORMAT_VERSION", cache_module.FORMAT_VERSION + 1)
    assert VoiceCache.key(**KEY_PARTS) != key


def test_cache_key_keeps_its_parts_apart():
    a = VoiceCache.key(text="a b", engine="e", engine_version="1", voice="v", rate=1)
    b = VoiceCache.key(text="a", engine="e", engine_version="1", voice="v b", rate=1)
    assert a != b


def test_cache_round_trip(tmp_path):
    cache = VoiceCache(tmp_path)
    clip = fake_clip("Breathe in")
    cache.put("k", clip)
    loaded = cache.get("k")
    assert loaded is not None
    assert loaded.rate == clip.rate
    assert loaded.samples.dtype == np.int16
    assert np.array_equal(loaded.samples, clip.samples)


def test_cache_miss_is_none(tmp_path):
    assert VoiceCache(tmp_path / "not-yet").get("nothing") is None


def test_cache_write_leaves_only_the_entry(tmp_path):
    cache = VoiceCache(tmp_path / "c")
    cache.put("k", fake_clip("x"))
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["k.clip"]


def test_failed_cache_write_keeps_the_old_entry_and_no_temp_file(tmp_path, monkeypatch):
    cache = VoiceCache(tmp_path)
    old = fake_clip("old")
    cache.put("k", old)

    def broken_link(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "link", broken_link)
    with pytest.raises(EngineError, match="No space left on device"):
        cache.put("k2", fake_clip("a new and longer clip"))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["k.clip"]
    assert np.array_equal(cache.get("k").samples, old.samples)


def test_unwritable_cache_is_an_engine_error_with_a_hint(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EngineError) as raised:
        VoiceCache(blocker / "voice").put("k", fake_clip("x"))
    assert "VOICEFLEX_CACHE_DIR" in (raised.value.hint or "")


def damage_flip(data: bytes) -> bytes:
    middle = len(data) - 10
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(lambda d: d[:20], id="torn-header"),
        pytest.param(lambda d: b"", id="empty"),
        pytest.param(damage_flip, id="flipped-bit"),
        pytest.param(lambda d: b"RIFF" + d[4:], id="bad-magic"),
        pytest.param(lambda d: d + b"\0\0", id="extra-samples"),
    ],
)
def test_damaged_entry_reads_as_missing_and_is_removed(tmp_path, damage):
    cache = VoiceCache(tmp_path)
    cache.put("k", fake_clip("Breathe in"))
    path = cache.path("k")
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get("k") is None
    assert not path.exists()


def test_readers_never_see_a_partial_entry_while_writers_replace_it(tmp_path):
    # Threads share the file system exactly as processes do: a reader opens
    # either the old file or the new one, never one being written.
    cache = VoiceCache(tmp_path)
    clips = [fake_clip("x" * n) for n in (5, 40, 80)]
    lengths = {len(c.samples) for c in clips}
    cache.put("k", clips[0])
    stop = threading.Event()
    seen: list[int | None] = []

    def write(clip):
        while not stop.is_set():
            cache.put("k", clip)

    def read():
        while not stop.is_set():
            got = cache.get("k")
            seen.append(None if got is None else len(got.samples))

    threads = [threading.Thread(target=write, args=(c,)) for c in clips]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert seen and set(seen) <= lengths
    assert not list(tmp_path.glob(".*.tmp"))


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path / "here"))
    assert VoiceCache().directory == tmp_path / "here"
    monkeypatch.delenv("VOICEFLEX_CACHE_DIR")
    monkeypatch.setattr(
        files.platformdirs, "user_cache_dir", lambda app: f"/home/u/.cache/{app}"
    )
    assert default_cache_dir() == Path("/home/u/.cache/voiceflex/voice")


# --- synthesize ---------------------------------------------------------------


def test_synthesize_maps_every_distinct_text_to_its_clip(fake_engine):
    texts = ["Breathe in", "Hold", "Breathe in", "Breathe out"]
    clips = synthesize(texts, SETTINGS, engine=fake_engine)
    assert list(clips) == ["Breathe in", "Hold", "Breathe out"]
    assert {t: c.ms for t, c in clips.items()} == {t: fake_ms(t) for t in clips}
    assert fake_engine.rendered == ["Breathe in", "Hold", "Breathe out"]


def test_second_synthesize_renders_nothing(fake_engine):
    first = synthesize(["Breathe in", "Hold"], SETTINGS, engine=fake_engine)
    fake_engine.rendered.clear()
    second = synthesize(["Hold", "Breathe in"], SETTINGS, engine=FakeEngine())
    again = synthesize(["Hold", "Breathe in"], SETTINGS, engine=fake_engine)
    assert fake_engine.rendered == []
    for clips in (second, again):
        for text, clip in clips.items():
            assert np.array_equal(clip.samples, first[text].samples)


def test_synthesize_uses_the_cache_folder_from_the_environment(fake_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path / "env-cache"))
    synthesize(["Hold"], SETTINGS, engine=fake_engine)
    assert len(list((tmp_path / "env-cache").glob("*.clip"))) == 1


def test_a_changed_setting_renders_again(fake_engine):
    synthesize(["Hold"], SETTINGS, engine=fake_engine)
    synthesize(["Hold"], VoiceSettings(rate=200), engine=fake_engine)
    synthesize(["Hold"], VoiceSettings(id="fake/en"), engine=fake_engine)
    assert fake_engine.rendered == ["Hold", "Hold", "Hold"]


def test_damaged_entry_is_rendered_again(fake_engine, tmp_path):
    cache = VoiceCache(tmp_path)
    synthesize(["Breathe in", "Hold"], SETTINGS, engine=fake_engine, cache=cache)
    entry = cache.path(VoiceCache.key("Hold", "fake", "1", "fake/en-us", SETTINGS.rate))
    entry.write_bytes(entry.read_bytes()[:100])
    fake_engine.rendered.clear()
    clips = synthesize(["Breathe in", "Hold"], SETTINGS, engine=fake_engine, cache=cache)
    assert fake_engine.rendered == ["Hold"]
    assert clips["Hold"].ms == fake_ms("Hold")
    assert cache.get(entry.stem) is not None


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_refused_before_any_rendering(fake_engine, text):
    with pytest.raises(UsageError, match="must have text"):
        synthesize(["Hold", text], SETTINGS, engine=fake_engine)
    assert fake_engine.rendered == []


def test_no_texts_need_no_engine(monkeypatch):
    def no_engine(*args):
        raise AssertionError("no engine should be made")

    monkeypatch.setattr("voiceflex.voice.synthesis.get_engine", no_engine)
    assert synthesize([], SETTINGS) == {}


def test_unknown_voice_is_refused_before_any_rendering(fake_engine):
    with pytest.raises(UsageError, match="did you mean fake/en-us"):
        synthesize(["Hold"], VoiceSettings(id="fake/en-uss"), engine=fake_engine)
    assert fake_engine.rendered == []


def test_progress_counts_cached_then_rendered_texts(fake_engine):
    calls: list[tuple[int, int]] = []
    synthesize(["a", "b"], SETTINGS, engine=fake_engine)
    synthesize(
        ["a", "b", "c", "d"], SETTINGS, engine=fake_engine, on_progress=lambda *a: calls.append(a)
    )
    assert calls == [(2, 4), (3, 4), (4, 4)]


def test_get_engine_refuses_an_unknown_name():
    with pytest.raises(UsageError, match='no voice engine "festival"') as raised:
        get_engine(VoiceSettings(engine="festival"))
    assert "pyttsx3" in raised.value.hint and "espeak-ng" in raised.value.hint


# --- missing system pieces ------------------------------------------------------


def test_missing_libespeak_is_a_missing_component(monkeypatch):
    monkeypatch.setattr(pyttsx3_engine, "find_library", lambda name: None)
    monkeypatch.setattr(pyttsx3_engine, "_LIB_DIRS", ())
    with pytest.raises(MissingComponentError, match="libespeak-ng is not installed") as raised:
        get_engine("pyttsx3")
    assert "sudo apt-get install espeak-ng" in raised.value.hint


def test_missing_pyttsx3_is_a_missing_component(monkeypatch):
    real_find_spec = pyttsx3_engine.importlib.util.find_spec
    monkeypatch.setattr(
        pyttsx3_engine.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyttsx3" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingComponentError, match="pyttsx3 is not installed"):
        get_engine("pyttsx3")


def test_missing_espeak_program_is_a_missing_component(monkeypatch):
    monkeypatch.setattr(espeak_cli.shutil, "which", lambda name: None)
    with pytest.raises(MissingComponentError, match="espeak-ng program is not installed") as raised:
        get_engine("espeak-ng")
    assert "sudo apt-get install espeak-ng" in raised.value.hint


# --- the espeak-ng command line, without espeak-ng -----------------------------------


class FakeEspeakProgram:
    """Stands in for subprocess.run: records each command and writes a padded WAV."""

    def __init__(self, failures: int = 0):
        self.commands: list[list[str]] = []
        self.failures = failures

    def __call__(self, command, **kwargs):
        assert isinstance(command, list) and not kwargs.get("shell")
        self.commands.append(command)
        if len(self.commands) <= self.failures:
            return _Completed(1, b"espeak-ng: out of luck\n")
        samples = np.concatenate([np.zeros(300), np.full(1000, 7), np.zeros(7700)]).astype("<i2")
        with wave.open(command[command.index("-w") + 1], "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(22050)
            f.writeframes(samples.tobytes())
        return _Completed(0, b"")


class _Completed:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def cli_engine(monkeypatch):
    monkeypatch.setattr(espeak_cli.shutil, "which", lambda name: "/usr/bin/espeak-ng")
    engine = espeak_cli.EspeakCliEngine()
    engine.fake = FakeEspeakProgram()
    monkeypatch.setattr(espeak_cli.subprocess, "run", engine.fake)
    return engine


def test_cli_passes_text_as_one_plain_argument(cli_engine):
    text = "-s 999 <speak>[[h@'loU]]</speak>"
    [(spoken, clip)] = list(cli_engine.render([text], "gmw/en-us", 160))
    [command] = cli_engine.fake.commands
    assert spoken == text
    options = ["-b", "1", "-v", "gmw/en-us", "-s", "160", "-w", command[-3]]
    assert command[:-2] == ["/usr/bin/espeak-ng", *options]
    assert command[-2] == "--"  # a text starting with "-" is no option
    assert command[-1] == "-s 999 <speak>[\u200b[h@'loU]]</speak>"  # not phoneme codes
    assert "-m" not in command  # no SSML
    assert clip.samples.tolist() == [7] * 1000  # espeak's zero padding trimmed


def test_cli_retries_a_failed_cue_once(cli_engine):
    cli_engine.fake.failures = 1
    [(_, clip)] = list(cli_engine.render(["Hold"], "gmw/en-us", 160))
    assert len(cli_engine.fake.commands) == 2
    assert clip.samples.size == 1000


def test_cli_second_failure_names_the_cue(cli_engine):
    cli_engine.fake.failures = 2
    expected = r'could not speak "Hold": espeak-ng exited with status 1 \(espeak-ng: out of luck\)'
    with pytest.raises(EngineError, match=expected):
        list(cli_engine.render(["Hold"], "gmw/en-us", 160))


def test_cli_voice_listing_is_parsed():
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  en-029          --/M      English_(Caribbean) gmw/en-029           (en 10)\n"
        " 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
    )
    assert espeak_cli._parse_voices(listing) == [
        VoiceInfo("gmw/en-029", "English (Caribbean)", ("en-029",)),
        VoiceInfo("gmw/en-us", "English (America)", ("en-us",)),
    ]


# --- worker supervision, with a backend that misbehaves on request -------------------

BACKEND = f"{__name__}:MisbehavingBackend"


class MisbehavingBackend:
    """Runs in a worker; each text says what to do.  Records its pid in $VF_TEST_PIDS."""

    def __init__(self):
        with open(os.environ["VF_TEST_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\n")

    def render(self, text: str, voice: str, rate: int) -> tuple[bytes, int]:
        word, _, arg = text.partition(" ")
        if word == "crash":
            os._exit(3)
        if word == "crash-once" and not os.path.exists(arg):
            Path(arg).touch()
            os._exit(3)
        if word == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if word == "hang":
            time.sleep(60)
        if word == "raise":
            raise RuntimeError("boom")
        print("Audio saved to somewhere")  # as pyttsx3 does
        return text.encode(), rate


class BrokenBackend:
    def __init__(self):
        raise OSError("could not initialize espeak")


@pytest.fixture
def pids(tmp_path, monkeypatch):
    path = tmp_path / "pids"
    path.touch()
    monkeypatch.setenv("VF_TEST_PIDS", str(path))
    return lambda: [int(p) for p in path.read_text().split()]


def assert_all_ended(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pool_renders_every_text_in_parallel_workers(pids):
    texts = [f"cue {i}" for i in range(20)]
    with WorkerPool(BACKEND, workers=2) as pool:
        results = dict(pool.render(texts, "v", 160))
    assert results == {t: (t.encode(), 160) for t in texts}
    assert len(pids()) == 2
    assert_all_ended(pids())


def test_crashed_worker_is_restarted_and_the_cue_retried(pids, tmp_path):
    crash_once = f"crash-once {tmp_path / 'crashed'}"
    with WorkerPool(BACKEND, workers=1) as pool:
        results = dict(pool.render(["one", crash_once, "two"], "v", 160))
    assert set(results) == {"one", crash_once, "two"}
    assert len(pids()) == 2  # the first worker, and the one that replaced it


def test_second_crash_is_an_engine_error_naming_the_cue(pids):
    expected = 'could not speak "crash": the speech process exited with status 3'
    with pytest.raises(EngineError, match=expected), WorkerPool(BACKEND, workers=1) as pool:
        list(pool.render(["one", "crash", "two"], "v", 160))
    assert len(pids()) == 2
    assert_all_ended(pids())


def test_worker_killed_by_a_signal_says_so(pids):
    with pytest.raises(EngineError, match="killed by SIGSEGV"), WorkerPool(BACKEND) as pool:
        list(pool.render(["segfault"], "v", 160))


def test_hung_worker_is_killed_after_the_timeout(pids):
    started = time.monotonic()
    # 3 s: long enough that "fine" (worker start-up included) never times out
    # on a loaded machine; the bound below only catches a pool that never gives up.
    expected = r'could not speak "hang": no answer within 3 s'
    with pytest.raises(EngineError, match=expected), WorkerPool(BACKEND, timeout=3) as pool:
        list(pool.render(["fine", "hang"], "v", 160))
    assert time.monotonic() - started < 120, "a hung worker was never given up on"
    assert_all_ended(pids())


def test_error_in_the_backend_is_reported_with_the_cue(pids):
    expected = 'could not speak "raise": RuntimeError: boom'
    with pytest.raises(EngineError, match=expected), WorkerPool(BACKEND) as pool:
        list(pool.render(["raise"], "v", 160))


def test_backend_that_cannot_start_is_an_engine_error():
    broken = f"{__name__}:BrokenBackend"
    with pytest.raises(EngineError, match="OSError: could not initialize espeak"):  # noqa: SIM117
        with WorkerPool(broken) as pool:
            pool.call("info")


def test_workers_never_print(pids, capfd):
    with WorkerPool(BACKEND, workers=2) as pool:
        list(pool.render(["a", "b", "c"], "v", 160))
    assert capfd.readouterr().out == ""

