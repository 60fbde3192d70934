"""The podcast feed (RSS 2.0 with the iTunes and Podcasting 2.0 namespaces) and its JSON chapters."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from email.utils import formatdate

from voiceflex.serve.renders import Outcome, Rendered

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
CHAPTERS_TYPE = "application/json+chapters"
CHAPTERS_VERSION = "1.2.0"  # Podcasting 2.0 JSON chapters

for _prefix, _uri in (("itunes", ITUNES), ("podcast", PODCAST), ("atom", ATOM)):
    ET.register_namespace(_prefix, _uri)


class Urls:
    """Where the server offers each thing: absolute URLs, as feeds need them."""

    def __init__(self, base: str):
        self.base = base if base.endswith("/") else base + "/"

    def page(self) -> str:
        return self.base

    def feed(self) -> str:
        return self.base + "feed.xml"

    def cover(self, entry_id: str | None = None) -> str:
        return self.base + (f"cover/{entry_id}.png" if entry_id is not None else "cover.png")

    def mp3(self, entry_id: str) -> str:
        return self.base + f"audio/{entry_id}.mp3"

    def chapters(self, entry_id: str) -> str:
        return self.base + f"chapters/{entry_id}.json"

    def pack(self, entry_id: str) -> str:
        return self.base + f"pack/{entry_id}.zip"


def chapters_json(track: Rendered) -> bytes:
    """The track's chapters as Podcasting 2.0 JSON chapters (times in seconds)."""
    data = {
        "version": CHAPTERS_VERSION,
        "title": track.title,
        "author": track.author or "voiceflex",
        "chapters": [{"startTime": c.start_ms / 1000, "endTime": c.end_ms / 1000, "title": c.title}
                     for c in track.chapters],
    }
    return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")


def feed_xml(outcomes: Sequence[Outcome], urls: Urls, *, title: str, description: str) -> bytes:
    """The feed of every routine that rendered, in the order given.

    Nothing in it depends on the time of the request, so the same cache gives
    the same bytes (and the same ETag) to every reader.
    """
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    _text(channel, "title", title)
    _text(channel, "link", urls.page())
    _text(channel, "description", description)
    _text(channel, "language", "en")
    _text(channel, "generator", "voiceflex")
    ET.SubElement(channel, f"{{{ATOM}}}link", {"href": urls.feed(), "rel": "self",
                                                "type": "application/rss+xml"})
    image = ET.SubElement(channel, "image")
    _text(image, "url", urls.cover())
    _text(image, "title", title)
    _text(image, "link", urls.page())
    _text(channel, f"{{{ITUNES}}}author", "voiceflex")
    ET.SubElement(channel, f"{{{ITUNES}}}image", {"href": urls.cover()})
    ET.SubElement(channel, f"{{{ITUNES}}}category", {"text": "Health & Fitness"})
    _text(channel, f"{{{ITUNES}}}explicit", "false")
    _text(channel, f"{{{ITUNES}}}type", "episodic")
    tracks = [o for o in outcomes if o.track is not None]
    if tracks:
        _text(channel, "lastBuildDate", _date(max(o.track.mp3.stat().st_mtime for o in tracks)))
    for outcome in tracks:
        _item(channel, outcome, urls)
    ET.indent(rss)
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True) + b"\n"


def _item(channel: ET.Element, outcome: Outcome, urls: Urls) -> None:
    track, entry = outcome.track, outcome.entry
    stat = os.stat(track.mp3)
    item = ET.SubElement(channel, "item")
    _text(item, "title", track.title)
    description = track.description or f"{track.title}: a voiceflex routine"
    _text(item, "description", description)
    _text(item, f"{{{ITUNES}}}summary", description)
    ET.SubElement(item, "enclosure", {"url": urls.mp3(entry.id), "length": str(stat.st_size),
                                      "type": "audio/mpeg"})
    # The render's key names its content: an edited routine is a new episode.
    _text(item, "guid", f"voiceflex-{track.key}", isPermaLink="false")
    _text(item, "pubDate", _date(stat.st_mtime))
    _text(item, f"{{{ITUNES}}}duration", str(round(track.duration_ms / 1000)))
    _text(item, f"{{{ITUNES}}}author", track.author or "voiceflex")
    _text(item, f"{{{ITUNES}}}explicit", "false")
    if track.cover.is_file():
        ET.SubElement(item, f"{{{ITUNES}}}image", {"href": urls.cover(entry.id)})
    ET.SubElement(item, f"{{{PODCAST}}}chapters", {"url": urls.chapters(entry.id),
                                                   "type": CHAPTERS_TYPE})


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = _xml_safe(text)
    return element


def _xml_safe(text: str) -> str:
    """`text` without the control characters XML 1.0 cannot carry."""
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def _date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)
