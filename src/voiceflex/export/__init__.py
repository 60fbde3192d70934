"""Exporting a routine for phones: MP3 (or WAV) files with tags, chapters and cover art.

    write(timeline, routine, clips, tones, path, fmt="mp3", bitrate="64k", on_progress=None) -> Path
    write_split(timeline, routine, clips, tones, folder, ...) -> Path   # the .m3u8 playlist
"""

from voiceflex.export.names import slug
from voiceflex.export.writer import write, write_split

__all__ = ["slug", "write", "write_split"]
