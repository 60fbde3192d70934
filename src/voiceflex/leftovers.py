"""Temporary files and folders named after the process writing them: removed once it is gone.

A process killed outright (SIGKILL, power loss) cannot clean up after
itself.  Everything voiceflex writes on the side carries its writer's pid in
its name, so the next run that writes there removes what dead ones left.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# A file written aside, then renamed into place (voice cache entries, level
# memos): `.<pid>-<random>.tmp` in the same folder.
TEMP_FILE = re.compile(r"^\.(\d+)-.*\.tmp$")


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
