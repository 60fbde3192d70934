"""Kept for audio/levels.py until it sweeps through voiceflex.files (then delete this module)."""

from voiceflex.files import TEMP_FILE, pid_alive, sweep  # noqa: F401
