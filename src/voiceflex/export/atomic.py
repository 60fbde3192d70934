"""Atomic output: files are written under temporary names in their folder, then renamed.

A crash, Ctrl-C, a full disk or an encoder failure leaves neither a partial
file under the final name nor a temporary file behind, and the previous file
of that name stays as it was.  Only a process killed outright (SIGKILL, power
loss) can leave a temporary file; its name carries the writer's pid, and the
next export into that folder removes it once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from voiceflex import files
from voiceflex.errors import EncoderError

_TEMP = re.compile(r"^\..+\.voiceflex-[0-9a-f]{8}-(\d+)\.part$")


NAME_MAX = 255  # bytes in one file name on Linux's file systems (ext4, xfs, btrfs, tmpfs)


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of `folder` takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX


def temp_name(final: Path) -> Path:
    """A fresh temporary path next to `final`, hidden, naming this process.

    The final name is cut short in it where the whole would not fit in a file
    name: a final name that fits must be writable, whatever its length.
    """
    tail = f".voiceflex-{secrets.token_hex(4)}-{os.getpid()}.part"
    name = final.name
    room = name_max(final.parent) - 1 - len(tail)
    while len(os.fsencode(name)) > room:  # by characters: never half of a UTF-8 sequence
        name = name[:-1]
    return final.with_name(f".{name}{tail}")


def prepare_folder(folder: Path) -> None:
    """Create `folder` if needed and remove temporary files that dead exports left there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EncoderError(f"cannot create the folder {folder}: {e.strerror or e}") from None
    files.sweep(folder, _TEMP)


class Staging:
    """Files written under temporary names, renamed to their final names together on commit."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def path_for(self, final: Path) -> Path:
        """A temporary path to write what will become `final`.

        A final name too long for its file system is refused here, before any
        work, rather than when the files are renamed (which would leave a set
        of files half replaced).
        """
        if len(os.fsencode(final.name)) > name_max(final.parent):
            raise EncoderError(f"could not write {final}: {os.strerror(errno.ENAMETOOLONG)}")
        temp = temp_name(final)
        self._pending.append((temp, final))
        return temp

    def commit(self) -> None:
        """Flush every file and rename each over its final name, in the order staged."""
        current = None
        try:
            for temp, final in self._pending:
                current = final
                files.fsync_file(temp)
            for temp, final in self._pending:
                current = final
                os.replace(temp, final)
        except OSError as e:
            self.discard()
            raise EncoderError(f"could not write {current}: {e.strerror or e}") from None
        folders = {final.parent for _, final in self._pending}
        self._pending = []
        for folder in folders:
            files.fsync_folder(folder)

    def shown(self, message: str) -> str:
        """`message` naming the final files: the user never sees the hidden temporary names."""
        for temp, final in self._pending:
            message = message.replace(str(temp), str(final)).replace(temp.name, final.name)
        return message

    def discard(self) -> None:
        """Remove every temporary file not yet renamed."""
        for temp, _ in self._pending:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        self._pending = []


@contextlib.contextmanager
def staged() -> Iterator[Staging]:
    """A Staging that commits when the block ends normally and discards on any exception."""
    staging = Staging()
    try:
        yield staging
    except EncoderError as e:
        # ffmpeg and the file system name the file being written: the temporary one.
        message = staging.shown(str(e))
        staging.discard()
        if message == str(e):
            raise
        raise EncoderError(message, hint=e.hint) from None
    except BaseException:
        staging.discard()
        raise
    staging.commit()
