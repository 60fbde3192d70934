"""The phone page: server-rendered HTML (page.html) with its stylesheet and script, no build step."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from html import escape
from importlib import resources
from string import Template

from voiceflex.routine.durations import format_ms
from voiceflex.serve.renders import Outcome

# Read once: a request never names a file.
ASSETS = {name: resources.files("voiceflex.serve").joinpath(name).read_bytes()
          for name in ("page.html", "page.css", "page.js")}
_TEMPLATE = Template(ASSETS["page.html"].decode("utf-8"))


def page_html(outcomes: Sequence[Outcome], *, title: str) -> bytes:
    """The page listing every routine: playable ones, and the problems of the others."""
    cards = "\n".join(_card(o) for o in outcomes) or "<p>No routines to serve.</p>"
    data = [_data(o) for o in outcomes if o.track is not None]
    # "<" escaped, so no text from a routine can close the script element.
    blob = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return _TEMPLATE.substitute(title=escape(title), cards=cards, data=blob).encode("utf-8")


def _card(outcome: Outcome) -> str:
    entry, track = outcome.entry, outcome.track
    ident = escape(entry.id)
    if track is None:
        lines = outcome.problems or (outcome.error or "could not be rendered",)
        why = ("This routine has mistakes. Fix them and reload this page:" if outcome.problems
               else "This routine could not be rendered:")
        return (f'<section class="routine broken" id="r-{ident}">'
                f"<h2>{escape(entry.path.name)}</h2>"
                f'<div class="problems"><p>{why}</p>'
                f"<pre>{escape(chr(10).join(lines))}</pre></div></section>")
    size = os.stat(track.mp3).st_size
    chapters = "".join(
        f'<li><button type="button" class="chapter" data-id="{ident}" data-index="{i}">'
        f'<span class="name">{escape(c.title)}</span><span class="time">{format_ms(c.start_ms)}</span>'
        f"</button></li>"
        for i, c in enumerate(track.chapters))
    count = len(track.chapters)
    meta = [format_ms(track.duration_ms), f"{count} chapter{'s' if count != 1 else ''}"]
    if track.author:
        meta.append(f"by {escape(track.author)}")
    description = f'<p class="description">{escape(track.description)}</p>' if track.description else ""
    return (f'<section class="routine" id="r-{ident}">'
            f'<h2><img src="cover/{ident}.png" alt="">{escape(track.title)}</h2>'
            f'<p class="meta">{" · ".join(meta)}</p>{description}'
            f'<button type="button" class="play" data-id="{ident}">Play</button>'
            f'<ol class="chapters">{chapters}</ol>'
            f'<div class="downloads">'
            f'<a class="download" href="audio/{ident}.mp3" download="{ident}.mp3">MP3 · {_mb(size)}</a>'
            f'<a class="download" href="pack/{ident}.zip" download="{ident}.zip">'
            f"One file per chapter (zip)</a></div></section>")


def _data(outcome: Outcome) -> dict:
    track, ident = outcome.track, outcome.entry.id
    return {"id": ident, "title": track.title, "mp3": f"audio/{ident}.mp3", "cover": f"cover/{ident}.png",
            "duration": track.duration_ms / 1000,
            "chapters": [{"title": c.title, "start": c.start_ms / 1000, "end": c.end_ms / 1000}
                         for c in track.chapters]}


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{max(1, round(size / 1000))} kB"
