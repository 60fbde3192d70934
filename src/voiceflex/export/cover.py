"""Cover art: a square PNG with the routine's title and author, generated with Pillow.

Each character is drawn in the first installed font that has it (fonts.py):
Latin, CJK and emoji all show; what no font has is left out, never a box.
"""

from __future__ import annotations

import io

from voiceflex.export import fonts

SIZE = 600
_WHITE, _PALE = (255, 255, 255), (233, 245, 243)


def cover_png(title: str, author: str | None = None, size: int = SIZE) -> bytes | None:
    """A size x size PNG showing `title` (and `author` under it), or None when Pillow is not installed."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    top, bottom = (38, 70, 83), (42, 157, 143)  # deep teal to green
    for y in range(size):
        t = y / (size - 1)
        draw.line([(0, y), (size, y)],
                  fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    bold, regular = fonts.faces(fonts.BOLD), fonts.faces(fonts.REGULAR)
    if not bold:  # no font at all here: a plain cover beats none
        return _png(image)
    margin = size // 10
    width = size - 2 * margin
    text = _Text(image, draw)
    title = " ".join(title.split()) or "voiceflex"
    points, lines = _fit(text, title, bold, width, size)
    byline = " ".join((author or "").split())
    by_points = max(12, size // 22)
    by_lines = _wrap(text, byline, regular, by_points, width)[:2] if byline and regular else []
    line_h, by_h = round(points * 1.25), round(by_points * 1.3)
    block = line_h * len(lines) + (by_points + by_h * len(by_lines) if by_lines else 0)
    y = (size - block) // 2
    for line in lines:
        text.draw_centered(line, bold, points, y, size, _WHITE)
        y += line_h
    y += by_points
    for line in by_lines:
        text.draw_centered(line, regular, by_points, y, size, _PALE)
        y += by_h
    if regular:
        mark = max(12, size // 28)
        text.draw_centered("voiceflex", regular, mark, size - margin // 2 - mark, size, _PALE)
    return _png(image)


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _fit(text: _Text, title: str, chain, width: int, size: int) -> tuple[int, list[str]]:
    """The largest size (down to a floor) at which `title` wraps into at most 5 lines."""
    for points in range(size // 8, size // 30, -4):
        lines = _wrap(text, title, chain, points, width)
        if len(lines) <= 5:
            return points, lines
    points = size // 30
    return points, _wrap(text, title, chain, points, width)[:6]


def _wrap(text: _Text, words: str, chain, points: int, width: int) -> list[str]:
    """Lines of at most `width` pixels; a word wider than a line (CJK has no spaces) breaks anywhere."""
    lines: list[str] = []
    for word in (w for w in words.split() if text.width(w, chain, points) > 0):
        if lines and text.width(f"{lines[-1]} {word}", chain, points) <= width:
            lines[-1] = f"{lines[-1]} {word}"
            continue
        lines.append("")
        for ch in word:
            if lines[-1] and text.width(lines[-1] + ch, chain, points) > width:
                lines.append("")
            lines[-1] += ch
    return lines


class _Text:
    """Lines drawn piece by piece, each piece in the font that has its characters."""

    def __init__(self, image, draw):
        self.image, self.draw = image, draw

    def width(self, line: str, chain, points: int) -> int:
        return sum(self._piece_width(piece, face, points) for piece, face in fonts.runs(line, chain))

    def draw_centered(self, line: str, chain, points: int, top: int, size: int, fill) -> None:
        x = (size - self.width(line, chain, points)) / 2
        for piece, face in fonts.runs(line, chain):
            font = fonts.truetype(face.path, points)
            if face.bitmap:
                x += self._paste_bitmap(piece, font, points, x, top)
            else:
                ascent = font.getmetrics()[0]
                # Baselines line up across fonts: each piece sits on the line's baseline.
                self.draw.text((x, top + points - ascent), piece, font=font, fill=fill)
                x += font.getlength(piece)

    def _piece_width(self, piece: str, face, points: int) -> int:
        font = fonts.truetype(face.path, points)
        if face.bitmap:
            return round(font.getlength(piece) * points / fonts.BITMAP_POINTS)
        return round(font.getlength(piece))

    def _paste_bitmap(self, piece: str, font, points: int, x: float, top: int) -> float:
        """Colour glyphs drawn at their one size, scaled to the line's, pasted in place."""
        from PIL import Image, ImageDraw

        w = max(1, round(font.getlength(piece)))
        h = round(fonts.BITMAP_POINTS * 1.2)
        glyphs = Image.new("RGBA", (w, h))
        ImageDraw.Draw(glyphs).text((0, 0), piece, font=font, embedded_color=True)
        scale = points / fonts.BITMAP_POINTS
        small = glyphs.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        self.image.paste(small, (round(x), round(top + points * 0.1)), small)
        return small.width
