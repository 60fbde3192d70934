"""Live playback: a planned routine through the sound output, with pause, skips and a display (the `play` command)."""

from __future__ import annotations

from voiceflex.player.display import MIN_COLUMNS, Status, StatusModel, chapter_line, rich_view, status_line
from voiceflex.player.keys import Command, KeyDecoder, Keys, NoKeys, terminal_keys
from voiceflex.player.output import Output, Stream, default_output
from voiceflex.player.render_thread import TrackRender, render_track
from voiceflex.player.session import Outcome, Player, find_chapter
from voiceflex.player.playback import play

__all__ = [
    "MIN_COLUMNS",
    "Output",
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
    "default_output",
    "find_chapter",
    "play",
    "render_track",
    "rich_view",
    "status_line",
    "terminal_keys",
]
