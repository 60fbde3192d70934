"""The routines a server offers: each named by a slug the server makes, never by a path from a request."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from voiceflex.export import slug
from voiceflex.routine import builtin_names, resolve

# A YAML file in the folder is offered only if it looks like a routine: other
# YAML files (CI settings, compose files) are not the user's routines.
_LOOKS_LIKE_ROUTINE = re.compile(rb"(?m)^steps\s*:")
_SNIFF_BYTES = 1_000_000


@dataclass(frozen=True)
class Entry:
    """One routine on offer: `id` is its place in every URL, `ref` what the pipeline loads."""

    id: str
    ref: str
    path: Path  # the file itself, resolved once at start


def entries(refs: list[str], folder: Path | None = None) -> list[Entry]:
    """The routines `refs` name (paths or built-in names), or by default the built-in
    routines and the routine files in `folder`.

    A ROUTINE argument that names nothing is a UsageError at start.  The same
    file named twice is offered once.  Ids are slugs of the file names, made
    unique with -2, -3...
    """
    if not refs:
        refs = builtin_names() + (folder_routines(folder) if folder is not None else [])
    taken: set[str] = set()
    seen: set[str] = set()
    found: list[Entry] = []
    for ref in refs:
        path, _ = resolve(ref)
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        base = slug(path.stem, fallback="routine")
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}-{n}"
        taken.add(ident)
        found.append(Entry(ident, ref, Path(real)))
    return found


def folder_routines(folder: Path) -> list[str]:
    """The routine files directly in `folder` (no links leading out of it), sorted by name."""
    inside = os.path.realpath(folder)
    here = inside == os.path.realpath(os.getcwd())
    out = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix not in (".yaml", ".yml") or path.name.startswith("."):
            continue
        real = os.path.realpath(path)
        if os.path.dirname(real) != inside or not os.path.isfile(real):
            continue
        try:
            with open(real, "rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError:
            continue
        if _LOOKS_LIKE_ROUTINE.search(head):
            # In the current folder the bare name, so errors read `mine.yaml:3:5: ...`.
            out.append(path.name if here else str(path))
    return out
