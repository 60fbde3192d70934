"""Exporting a routine for phones: MP3 (or WAV) files with tags, chapters and cover art.

    write(track, timeline, routine, path, fmt="mp3", bitrate="64k", on_progress=None) -> Path
    write_split(track, timeline, routine, folder, ...) -> Path   # the .m3u8 playlist

`track` is a pipeline.Track: the routine's samples, levelled for the format.
"""

from voiceflex.export.names import slug
from voiceflex.export.writer import write, write_split

__all__ = ["slug", "write", "write_split"]
