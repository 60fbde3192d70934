"""Fonts for the cover: found on the system at run time, chosen per character by what each one covers.

scripts/setup installs Debian's Noto fonts (fonts-noto-core, fonts-noto-cjk,
fonts-noto-color-emoji); DejaVu is the fallback found nearly everywhere.  A
character no installed font has is left out, never drawn as a box.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

# In order of preference: the first that has a character draws it.
BOLD = ("NotoSans-Bold.ttf", "DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf",
        "NotoSansCJK-Bold.ttc", "NotoSansSymbols2-Regular.ttf", "NotoColorEmoji.ttf")
REGULAR = ("NotoSans-Regular.ttf", "DejaVuSans.ttf", "LiberationSans-Regular.ttf",
           "NotoSansCJK-Regular.ttc", "NotoSansSymbols2-Regular.ttf", "NotoColorEmoji.ttf")
# Where Debian puts them, looked up directly; then the smaller folders a user
# adds fonts to, walked (walking all of /usr/share/fonts takes ~0.7 s).
KNOWN_DIRS = ("/usr/share/fonts/truetype/noto", "/usr/share/fonts/opentype/noto",
              "/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
USER_DIRS = ("/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
BITMAP_POINTS = 109  # Noto Color Emoji is a bitmap font drawn at this size only, then scaled


@dataclass(frozen=True)
class Face:
    """One font file; the characters it has are read from it when first asked."""

    path: str

    @property
    def bitmap(self) -> bool:
        return "ColorEmoji" in os.path.basename(self.path)

    def has(self, ch: str) -> bool:
        return ord(ch) in _chars(self.path)


def faces(names: tuple[str, ...]) -> list[Face]:
    """The fonts of `names` installed here, in that order."""
    found = _installed()
    return [Face(found[name]) for name in names if name in found]


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
    """Font file name -> path (looked up once a process)."""
    found: dict[str, str] = {}
    for folder in KNOWN_DIRS:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                found.setdefault(name, os.path.join(folder, name))
    for folder in USER_DIRS:
        for root, _, files in os.walk(os.path.expanduser(folder)):
            for name in files:
                found.setdefault(name, os.path.join(root, name))
    return found


@functools.lru_cache(maxsize=32)
def _chars(path: str) -> frozenset[int]:
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError:  # without fontTools, trust the first font with everything
        return frozenset(range(0x110000))
    try:
        font = TTCollection(path, lazy=True).fonts[0] if path.endswith(".ttc") else TTFont(path, lazy=True)
        return frozenset(font["cmap"].getBestCmap() or ())
    except Exception:  # noqa: BLE001 - a damaged font file is simply not used
        return frozenset()


@functools.lru_cache(maxsize=128)
def truetype(path: str, points: int):
    """Pillow's font for `path` at `points` (bitmap fonts at the only size they have)."""
    from PIL import ImageFont

    return ImageFont.truetype(path, BITMAP_POINTS if "ColorEmoji" in path else points)
