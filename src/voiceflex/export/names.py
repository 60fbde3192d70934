"""Safe file names from titles: no path separators, no dots to climb with, no control characters."""

from __future__ import annotations

import unicodedata

MAX_SLUG = 60


def slug(title: str, fallback: str = "chapter") -> str:
    """`title` as a file-name stem: lower case letters and digits joined by single hyphens.

    Accents are dropped ("Hüfte" -> "hufte"); letters of other scripts are
    kept; everything else (slashes, dots, spaces, control characters, emoji)
    becomes a hyphen.  The result never is empty, ".", ".." or hidden, so a
    name built from it stays inside its folder.
    """
    decomposed = unicodedata.normalize("NFKD", title)
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch.isalnum():
            out.append(ch.lower())
        elif out and out[-1] != "-":
            out.append("-")
    text = "".join(out).strip("-")[:MAX_SLUG].strip("-")
    return text or fallback


def chapter_file_name(number: int, count: int, title: str, ext: str) -> str:
    """E.g. '01-stretch-left.mp3': the chapter's number (zero-padded) and its title's slug."""
    width = max(2, len(str(count)))
    return f"{number:0{width}d}-{slug(title)}.{ext}"


def playlist_title(title: str) -> str:
    """A title on one line, as #EXTINF needs it."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in title).split())
