"""The external programs voiceflex runs (ffmpeg), found on PATH, with the one-line fix when missing."""

from __future__ import annotations

import shutil

from voiceflex.errors import MissingComponentError

FFMPEG_HINT = "install ffmpeg: sudo apt-get install ffmpeg"


def ffmpeg_path(needed_for: str = "it encodes MP3 files") -> str:
    """The ffmpeg program, or MissingComponentError saying what it is for and how to install it."""
    found = shutil.which("ffmpeg")
    if not found:
        raise MissingComponentError(f"ffmpeg is not installed; {needed_for}", hint=FFMPEG_HINT)
    return found


def last_line(text: str) -> str:
    """The last line a program printed that is not blank (its error, for a one-line message)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
