"""Cue texts no voice can speak, with the real default engine: located errors, or warnings and clean speech."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def voiceflex(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "VOICEFLEX_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "voiceflex", *args], capture_output=True, text=True,
                          env=env, timeout=300)


# Before the normaliser, `plan` on each of these ended in exit 1,
# 'could not speak "-": RuntimeError: pyttsx3 wrote no sound'.
@pytest.mark.parametrize("text", ["-", ".", "\u2014", "\u200b", "\u00ad", "\u2060", "\ue000",
                                  "\U000e0041\U000e0042", "\U0001f642"],
                         ids=["hyphen", "full-stop", "em-dash", "zwsp", "soft-hyphen", "word-joiner",
                              "private-use", "tags", "emoji"])
@pytest.mark.parametrize("where", ["say", "side"])
def test_nothing_speakable_is_a_located_routine_error(text, where, tmp_path):
    body = (f"  - say: {json.dumps(text)}\n" if where == "say" else
            f"  - sides: [{json.dumps(text)}, right]\n    steps:\n      - say: The {{side}} side.\n")
    routine = tmp_path / "r.yaml"
    routine.write_text("title: T\nsteps:\n" + body, encoding="utf-8")
    for command in ("validate", "plan"):
        result = voiceflex(command, str(routine), cache=tmp_path / "cache")
        assert result.returncode == 2, result.stdout + result.stderr
        out = result.stdout + result.stderr
        assert f"{routine}:3:" in out and "Traceback" not in out and "wrote no sound" not in out
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.clip")), "nothing synthesized"


def test_unspeakable_characters_are_stripped_with_a_warning(tmp_path):
    routine = tmp_path / "r.yaml"
    routine.write_text('title: T\nsteps:\n  - say: "Stand\u200b tall 🧘\u200d♀️."\n  - say: Stand tall.\n',
                       encoding="utf-8")
    result = voiceflex("plan", "--json", str(routine), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"{routine}:3:10: warning: U+200B ZERO WIDTH SPACE, U+1F9D8 PERSON IN LOTUS")
    first, second = json.loads(result.stdout)["events"]
    assert first["text"] == "Stand\u200b tall 🧘\u200d♀️."  # the author's words stay in the plan
    # Spoken as "Stand tall." (one clip for both), not with espeak's names for the symbols.
    assert first["end_ms"] - first["start_ms"] == second["end_ms"] - second["start_ms"]
