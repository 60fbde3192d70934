"""Shared fixtures: the fake TTS engine, and a private voice cache and config folder for every test."""

from __future__ import annotations

import signal

import pytest

from helpers.fakes import FakeEngine

# Started in the background by a shell without job control (`scripts/test &`),
# the tests inherit SIGINT ignored, and so would every voiceflex they start:
# the tests of Ctrl-C would see it ignored.  A handler of our own is reset to
# the default in each child, as at a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(autouse=True)
def _private_voice_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point the voice cache at a fresh folder, so no test reads or fills the user's cache.

    The config folder too: the user's config.toml must not change what tests see.
    """
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path_factory.mktemp("voice-cache")))
    monkeypatch.setenv("VOICEFLEX_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
