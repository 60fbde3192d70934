"""Shared fixtures: the fake TTS engine, and a private voice cache and config folder for every test."""

from __future__ import annotations

import pytest

from helpers.fakes import FakeEngine


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
