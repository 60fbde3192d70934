"""Routine files: find them (paths or built-in names), load and validate them."""

from __future__ import annotations

from pathlib import Path

from voiceflex.errors import UsageError
from voiceflex.errors import RoutineError
from voiceflex.routine.loader import read_routine
from voiceflex.routine.model import Routine
from voiceflex.routine.values import short, suggest

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin_routines"


def builtin_names() -> list[str]:
    """Names of the routines that ship with voiceflex."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve(ref: str) -> tuple[Path, str]:
    """The file behind a ROUTINE argument (a path or a built-in name) and how to show it."""
    path = Path(ref)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UsageError(f"{short(ref)}: {exc.strerror or exc}",
                         hint="give a path to a .yaml file, or a built-in name from `voiceflex list`") from None
    if path.suffix in (".yaml", ".yml") or "/" in ref or exists:
        if not is_file:
            raise UsageError(f"{ref}: no such routine file",
                             hint="give a path to a .yaml file, or a built-in name from `voiceflex list`")
        return path, ref
    builtin = BUILTIN_DIR / f"{ref}.yaml"
    if builtin.is_file():
        return builtin, builtin.name
    names = builtin_names()
    raise UsageError(f"no routine file or built-in routine named `{ref}`{suggest(ref, names)}",
                     hint=f"built-in routines: {', '.join(names)} (see `voiceflex list`)")


def load(ref: str) -> Routine:
    """Load and validate the routine named by `ref`; raises RoutineError or UsageError."""
    routine, problems = read(ref)
    if problems:
        raise RoutineError(problems)
    return routine


def read(ref: str):
    """The routine named by `ref` as far as it could be read, and the problems found."""
    path, display = resolve(ref)
    return read_routine(path, display)
