"""A block-digit font for the player's clock: "1:23" as five rows of full blocks, readable across a room."""

from __future__ import annotations

# 3 x 5 pixels a digit; each pixel is two characters wide, so a digit is
# about as wide as it is tall in a terminal's cells.
_GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": ("##.", ".#.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    ":": (".", "#", ".", "#", "."),
}
ROWS = 5


def big(text: str) -> list[str]:
    """`text` (digits and colons) as ROWS lines of "█" and spaces, one column between glyphs."""
    rows = [[] for _ in range(ROWS)]
    for char in text:
        glyph = _GLYPHS[char]
        for row, pixels in zip(rows, glyph):
            row.append("".join("██" if p == "#" else "  " for p in pixels))
    return [" ".join(row).rstrip() for row in rows]


def width(text: str) -> int:
    """Columns `big(text)` takes."""
    return sum(len(_GLYPHS[c][0]) * 2 for c in text) + max(len(text) - 1, 0)
