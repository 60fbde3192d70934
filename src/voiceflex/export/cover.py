"""Cover art: a square PNG with the routine's title, generated with Pillow."""

from __future__ import annotations

import io

SIZE = 600
_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf")


def cover_png(title: str, size: int = SIZE) -> bytes | None:
    """A size x size PNG showing `title`, or None when Pillow is not installed."""
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
    margin = size // 10
    width = size - 2 * margin
    lines, font = _fit(draw, title.strip() or "voiceflex", width, size)
    heights = [_box(draw, line, font)[3] - _box(draw, line, font)[1] for line in lines]
    gap = max(1, font_size(font) // 4)
    y = (size - (sum(heights) + gap * (len(lines) - 1))) // 2
    for line, height in zip(lines, heights, strict=True):
        left, top_edge, right, _ = _box(draw, line, font)
        draw.text(((size - (right - left)) // 2 - left, y - top_edge), line,
                  font=font, fill=(255, 255, 255))
        y += height + gap
    small = _font(max(12, size // 28))
    mark = "voiceflex"
    left, top_edge, right, bottom_edge = _box(draw, mark, small)
    draw.text(((size - (right - left)) // 2 - left, size - margin // 2 - bottom_edge),
              mark, font=small, fill=(233, 245, 243))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _fit(draw, title: str, width: int, size: int):
    """The largest font (down to a floor) at which `title` wraps into at most 5 lines."""
    for points in range(size // 8, size // 30, -4):
        font = _font(points)
        lines = _wrap(draw, title, font, width)
        if len(lines) <= 5 and all(_box(draw, line, font)[2] - _box(draw, line, font)[0] <= width
                                   for line in lines):
            return lines, font
    font = _font(size // 30)
    return _wrap(draw, title, font, width)[:6], font


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and _box(draw, f"{lines[-1]} {word}", font)[2] <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [text]


def _box(draw, text: str, font):
    return draw.textbbox((0, 0), text, font=font)


def _font(points: int):
    from PIL import ImageFont

    for name in _FONTS:
        try:
            return ImageFont.truetype(name, points)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=points)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def font_size(font) -> int:
    return int(getattr(font, "size", 10))
