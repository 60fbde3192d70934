"""The command line's shared options and argument types: voice choices, folders of routines, plain numbers."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from voiceflex.errors import UsageError


def voice_options(p: argparse.ArgumentParser) -> None:
    """--engine, --voice and --rate: override the routine's `voice:` and the config file."""
    p.add_argument("--engine", type=engine_name, help="speech engine, e.g. pyttsx3, espeak-ng, piper")
    p.add_argument("--voice", metavar="ID", type=short_text,
                   help="voice id (see `voiceflex voices`); without --engine it goes with the routine's engine")
    p.add_argument("--rate", metavar="WPM", type=words_per_minute, help="speaking rate, 80 to 400 words per minute")


def engine_name(text: str) -> str:
    """An engine voice.synthesis registers; else a usage error listing them."""
    from voiceflex.config import check_engine

    try:
        return check_engine(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def words_per_minute(text: str) -> int:
    """80..400 in plain digits."""
    from voiceflex.config import check_rate

    # ASCII digits only: int() also takes "²" or "①" (and fails), or 5,000 digits.
    if not re.fullmatch(r"[0-9]{1,4}", text.strip()):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a whole number of words per minute")
    try:
        return check_rate(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def short_text(text: str) -> str:
    """A printable value of reasonable length (an id, a bitrate, a language)."""
    if not text.strip() or len(text) > 200 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a value this can take")
    return text


def _shown(text: str) -> str:
    """An argument, cut short and with unprintable characters escaped, for a message."""
    from voiceflex.routine.values import short  # only on a bad argument: `--help` loads no routine reader

    text = short(text, 40)
    return repr(text) if not text.isprintable() or not text else f'"{text}"'


def settings(args: argparse.Namespace):
    """The command's settings: its options over the config file."""
    from voiceflex.config import Settings

    # `music` too, on the commands that have --music.
    given = {key: getattr(args, key, None) for key in ("engine", "voice", "rate", "output", "bitrate", "music")}
    return Settings.load(**given)


def routine_files(refs: list[str]) -> list[str]:
    """The ROUTINE arguments with each folder replaced by its *.yaml and *.yml files (not its subfolders)."""
    out = []
    for ref in refs:
        folder = Path(ref)
        try:
            is_folder = folder.is_dir()
        except OSError:  # e.g. a name too long for the file system: reading it says so
            is_folder = False
        if not is_folder:
            out.append(ref)
            continue
        files = sorted(str(p) for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise UsageError(f"{ref}: a folder with no .yaml or .yml files in it",
                             hint="give routine files, or a folder that holds them")
        out.extend(files)
    return out
