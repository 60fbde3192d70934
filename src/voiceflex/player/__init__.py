"""Live playback: a planned routine through the sound output, with pause, skips and a display (the `play` command)."""

from __future__ import annotations

from voiceflex.player.backend import Backend, Stream, default_backend
from voiceflex.player.display import MIN_COLUMNS, Status, StatusModel, chapter_line, rich_view, status_line
from voiceflex.player.engine import (
    Command, Keys, NoKeys, Outcome, Player, TrackRender, find_chapter, render_track,
)
from voiceflex.player.keys import KeyDecoder, terminal_keys
from voiceflex.player.playback import play

__all__ = [
    "MIN_COLUMNS",
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
    "play",
    "render_track",
    "rich_view",
    "status_line",
    "terminal_keys",
]
