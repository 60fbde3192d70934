"""What `export --split` wrote into its folder, so that it replaces and removes only those files.

A split folder holds the chapter files and the playlist, and may hold files
of the user's too.  The manifest, `.voiceflex-split.json` in that folder,
lists each file voiceflex wrote with its size, modification time and inode
at the time: a file counts as voiceflex's only while all three still match,
so one the user replaced or added under the same name is theirs.  A playlist
says nothing about who wrote the files it lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from voiceflex.errors import UsageError

NAME = ".voiceflex-split.json"
_MAX_BYTES = 1 << 20  # far more than any routine's chapters take


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def read(folder: Path) -> dict[str, list[int]]:
    """File name -> stamp of what the last export wrote into `folder` (empty if unknown)."""
    try:
        fd = os.open(folder / NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(_MAX_BYTES + 1)) if os.fstat(f.fileno()).st_size <= _MAX_BYTES else {}
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}
    return {name: stamp for name, stamp in files.items()
            if isinstance(name, str) and os.path.basename(name) == name and not name.startswith(".")
            and isinstance(stamp, list) and len(stamp) == 3 and all(type(v) is int for v in stamp)}


def ours(folder: Path, name: str, written: dict[str, list[int]]) -> bool:
    """Whether `folder/name` is still the file an export wrote."""
    return name in written and _stamp(folder / name) == written[name]


def check_folder(folder: Path, names: list[str], written: dict[str, list[int]]) -> None:
    """UsageError if `folder` is a symbolic link, or a file an export would replace is not voiceflex's."""
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link; export --split writes only into a folder of its own",
                         hint="remove the link, or choose another -o")
    for name in names:
        if os.path.lexists(folder / name) and not ours(folder, name, written):
            raise UsageError(f"{folder / name} is in the way: voiceflex did not write it, so it will not "
                             "replace it", hint="move it away, or choose another -o")


def content(folder: Path, temps: dict[str, Path]) -> str:
    """The manifest of the files about to be renamed from `temps` (final name -> temporary path)."""
    return json.dumps({"files": {name: _stamp(temp) for name, temp in temps.items()}}, indent=1) + "\n"
