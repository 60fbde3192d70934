"""Exporting a routine for phones: MP3 (or WAV) files with tags, chapters and cover art.

    write(track, timeline, routine, path, output=OutputFormat, on_progress=None) -> Path
    write_split(track, timeline, routine, folder, output=...) -> Path   # the .m3u8 playlist

`track` is an audio.track.Track: the routine's samples, levelled for `output`.
"""

from voiceflex.export.names import slug
from voiceflex.export.writer import write, write_split

__all__ = ["slug", "write", "write_split"]
