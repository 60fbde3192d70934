"""Files voiceflex keeps on the side: cache paths, safe reads, atomic writes, and the sweep of dead writers' temp files.

Cache folders are shared state (see docs/reliability.md): a reader takes
anything odd under an entry's name for a missing entry, and every temporary
file or folder carries its writer's pid, so the next writer removes what a
killed one left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import platformdirs

# A file or folder written aside, then renamed into place: `.<pid>-<random>.tmp` in the same folder.
TEMP_FILE = re.compile(r"^\.(\d+)-.*\.tmp$")


# ---- cache paths ---------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """VOICEFLEX_CACHE_DIR if set, else the user's cache folder for voiceflex."""
    configured = os.environ.get("VOICEFLEX_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("voiceflex")) / "voice"


def data_dir() -> Path:
    """VOICEFLEX_DATA_DIR if set, else the user's data folder for voiceflex (Piper voices, the kept token)."""
    configured = os.environ.get("VOICEFLEX_DATA_DIR")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("voiceflex"))


def cache_path(name: str) -> Path:
    """`name` (a subfolder such as "levels", "beds", "serve", or a memo file) in the cache folder."""
    return default_cache_dir() / name


# ---- reading a cache entry -----------------------------------------------------------------------

def read(path: Path, limit: int) -> bytes | None:
    """The bytes of `path`, or None when there is no regular file of at most `limit` bytes there.

    A non-regular entry other than a directory (a FIFO, a link, a device) is
    removed so it can be written again; a directory is left alone.  Errors
    other than a missing or unfit entry (e.g. no permission) are raised.
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


# ---- writing aside, then renaming ----------------------------------------------------------------

def temp_prefix() -> str:
    """The start of a temporary name that `sweep(folder, TEMP_FILE)` can tell as ours."""
    return f".{os.getpid()}-"


def temp_file(folder: Path) -> IO[bytes]:
    """A fresh temporary file in `folder` (kept on close), named for TEMP_FILE."""
    return tempfile.NamedTemporaryFile(dir=folder, prefix=temp_prefix(), suffix=".tmp", delete=False)


def temp_dir(folder: Path) -> Path:
    """A fresh temporary folder in `folder`, named for TEMP_FILE, after sweeping what dead writers left."""
    sweep(folder, TEMP_FILE)
    return Path(tempfile.mkdtemp(dir=folder, prefix=temp_prefix(), suffix=".tmp"))


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` aside with `write(file)` and rename it: a reader sees all of it or none.

    Best effort, for memos: one that cannot be written is worked out again.
    """
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep(path.parent, TEMP_FILE)
        with temp_file(path.parent) as f:
            temp = f.name
            write(f)
        os.replace(temp, path)
    except OSError:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def write_text_atomically(path: Path, text: str) -> None:
    """write_atomically for a UTF-8 text."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def fsync_file(path: Path) -> None:
    """Flush `path` to disk, so a rename over the old file never exposes an empty one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames into it) to disk; best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- the sweep -----------------------------------------------------------------------------------

def sweep(folder: Path, pattern: re.Pattern[str]) -> None:
    """Remove the entries of `folder` matching `pattern` (group 1: a pid) whose process is gone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match and not pid_alive(int(match.group(1))):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (ours or anyone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file's bytes, read a block at a time (OSError if it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
