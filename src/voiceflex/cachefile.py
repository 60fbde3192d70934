"""Read a file of a cache that may be damaged: never block on it, never follow a link, never read past a bound.

Cache folders are shared state: anything can be left under an entry's name
(a directory, a FIFO that would block a reader for ever, a link to /dev/zero,
an 8 GB sparse file).  Such an entry reads as missing, like a damaged one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def read(path: Path, limit: int) -> bytes | None:
    """The bytes of `path`, or None when there is no regular file of at most `limit` bytes there.

    A non-regular entry other than a directory (a FIFO, a link, a device) is
    removed, so that the entry can be written again; a directory is left
    alone (the caller's write then gives up on storing, not on its work).
    Other errors than a missing or unfit entry (e.g. no permission) are raised.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        if os.path.islink(path):  # O_NOFOLLOW on a link: ELOOP
            remove(path)
            return None
        if os.path.isdir(path):
            return None
        raise e
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        remove(path)
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while read
        return None
    return data


def remove(path: Path) -> None:
    """Remove the entry at `path` if it is not a directory; best effort."""
    with contextlib.suppress(OSError):
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
