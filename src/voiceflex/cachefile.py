"""Kept for audio/levels.py until it reads through voiceflex.files (then delete this module)."""

from voiceflex.files import read, remove  # noqa: F401
