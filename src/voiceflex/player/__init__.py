"""Live playback: a planned routine through the sound output, with pause, skips and a display (the `play` command)."""

from __future__ import annotations

from voiceflex.player.backend import Backend, Stream, default_backend
from voiceflex.player.display import Status, StatusModel, chapter_line, rich_view
from voiceflex.player.engine import (
    Command, Keys, NoKeys, Outcome, Player, TrackRender, find_chapter, render_track,
)
from voiceflex.player.keys import KeyDecoder, terminal_keys

__all__ = [
    "Backend",
    "Command",
    "KeyDecoder",
    "Keys",
    "NoKeys",
    "Outcome",
    "Player",
    "Status",
    "StatusModel",
    "Stream",
    "TrackRender",
    "chapter_line",
    "default_backend",
    "find_chapter",
    "render_track",
    "rich_view",
    "terminal_keys",
]
