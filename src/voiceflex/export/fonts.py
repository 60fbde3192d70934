"""Fonts for the cover: found on the system at run time, chosen per character by what each one covers.

scripts/setup installs Debian's Noto fonts (fonts-noto-core, fonts-noto-cjk,
fonts-noto-color-emoji); DejaVu is the fallback found nearly everywhere.  A
character no installed font has is left out, never drawn as a box.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

# In order of preference: the first that has a character draws it.
BOLD = ("NotoSans-Bold.ttf", "DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf",
        "NotoSansCJK-Bold.ttc", "NotoSansSymbols2-Regular.ttf", "NotoColorEmoji.ttf")
REGULAR = ("NotoSans-Regular.ttf", "DejaVuSans.ttf", "LiberationSans-Regular.ttf",
           "NotoSansCJK-Regular.ttc", "NotoSansSymbols2-Regular.ttf", "NotoColorEmoji.ttf")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
BITMAP_POINTS = 109  # Noto Color Emoji is a bitmap font drawn at this size only, then scaled


@dataclass(frozen=True)
class Face:
    """One font file and the characters it has."""

    path: str
    chars: frozenset[int]

    @property
    def bitmap(self) -> bool:
        return "ColorEmoji" in os.path.basename(self.path)

    def has(self, ch: str) -> bool:
        return ord(ch) in self.chars


def faces(names: tuple[str, ...]) -> list[Face]:
    """The fonts of `names` installed here, in that order."""
    found = _installed()
    return [face for name in names if name in found and (face := _face(found[name])) is not None]


def runs(text: str, chain: list[Face]) -> list[tuple[str, Face]]:
    """`text` cut into pieces each drawn by one font; characters none has are dropped.

    A space no font has still goes with the piece before it, to keep words apart.
    """
    out: list[tuple[str, Face]] = []
    for ch in text:
        face = next((f for f in chain if f.has(ch)), None)
        if face is None:
            if out and ch.isspace():
                face = out[-1][1]
            else:
                continue
        if out and out[-1][1] is face:
            out[-1] = (out[-1][0] + ch, face)
        else:
            out.append((ch, face))
    return out


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, str]:
    """Font file name -> path, over the usual font folders (walked once a process)."""
    found: dict[str, str] = {}
    for folder in FONT_DIRS:
        for root, _, files in os.walk(os.path.expanduser(folder)):
            for name in files:
                found.setdefault(name, os.path.join(root, name))
    return found


@functools.lru_cache(maxsize=32)
def _face(path: str) -> Face | None:
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError:  # without fontTools, trust the first font with everything
        return Face(path, frozenset(range(0x110000)))
    try:
        if path.endswith(".ttc"):
            font = TTCollection(path, lazy=True).fonts[0]
        else:
            font = TTFont(path, lazy=True)
        chars = frozenset(font["cmap"].getBestCmap() or ())
    except Exception:  # noqa: BLE001 - a damaged font file is simply not used
        return None
    return Face(str(Path(path)), chars)


@functools.lru_cache(maxsize=128)
def truetype(path: str, points: int):
    """Pillow's font for `path` at `points` (bitmap fonts at the only size they have)."""
    from PIL import ImageFont

    return ImageFont.truetype(path, BITMAP_POINTS if "ColorEmoji" in path else points)
