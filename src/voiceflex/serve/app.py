"""The web app: a token gate in front of a few fixed routes, with conditional and ranged responses.

Every URL starts with the secret token; without it every request gets the
same 404.  Behind the gate a request names a routine only by the id the
server gave it, looked up in a dict: no part of a request becomes a path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from voiceflex.serve.catalog import Entry
from voiceflex.serve.feed import Urls, chapters_json, feed_xml
from voiceflex.serve.page import ASSETS, page_html
from voiceflex.serve.renders import Outcome, Renders, Stopped

MAX_TARGET = 2048  # bytes of path and query a request may have; nothing here needs more
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # The token is in every URL: never hand it to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
     b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
]
_ASSET_TYPES = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}


class Site:
    """What one server offers: its routines, their renders and where they live."""

    def __init__(self, entries: Sequence[Entry], renders: Renders, base_url: str, *,
                 title: str = "voiceflex routines"):
        self.entries = {e.id: e for e in entries}
        self.renders = renders
        self.urls = Urls(base_url)
        self.title = title
        self._cover: bytes | None = None

    async def outcomes(self) -> list[Outcome]:
        """Every routine's current outcome; renders what is not in the cache yet (in parallel, up to the limit)."""
        return list(await asyncio.gather(*(self.renders.track(e) for e in self.entries.values())))

    def entry(self, request: Request) -> Entry:
        entry = self.entries.get(request.path_params["id"])
        if entry is None:
            raise HTTPException(404)
        return entry

    async def cover(self) -> bytes:
        if self._cover is None:
            from voiceflex.export.cover import cover_png

            self._cover = await run_in_threadpool(cover_png, "voiceflex", "routines") or b""
        return self._cover


def create_app(site: Site, token: str) -> _Gate:
    """The ASGI app serving `site` under /<token>/."""

    async def page(request: Request) -> Response:
        return _bytes(request, page_html(await site.outcomes(), title=site.title),
                      "text/html; charset=utf-8")

    async def feed(request: Request) -> Response:
        body = feed_xml(await site.outcomes(), site.urls, title=site.title,
                        description="Voice-guided routines from voiceflex, served on this network.")
        return _bytes(request, body, "application/rss+xml; charset=utf-8")

    async def audio(request: Request) -> Response:
        track = await _track(site, site.entry(request))
        return _file(request, track.mp3, "audio/mpeg", track.key)

    async def chapters(request: Request) -> Response:
        track = await _track(site, site.entry(request))
        return _bytes(request, chapters_json(track), "application/json+chapters")

    async def pack(request: Request) -> Response:
        entry = site.entry(request)
        found = await site.renders.pack(entry)
        if isinstance(found, Outcome):
            return _unavailable(found)
        return _file(request, found, "application/zip", found.parent.name, filename=f"{entry.id}.zip")

    async def cover(request: Request) -> Response:
        if "id" not in request.path_params:
            return _bytes(request, await site.cover(), "image/png")
        track = await _track(site, site.entry(request))
        if not track.cover.is_file():
            raise HTTPException(404)
        return _file(request, track.cover, "image/png", track.key)

    async def asset(request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        return _bytes(request, ASSETS[name], _ASSET_TYPES[name])

    routes = [
        Route("/", page),
        Route("/feed.xml", feed),
        Route("/audio/{id}.mp3", audio),
        Route("/chapters/{id}.json", chapters),
        Route("/pack/{id}.zip", pack),
        Route("/cover.png", cover),
        Route("/cover/{id}.png", cover),
        Route("/page.css", asset),
        Route("/page.js", asset),
    ]
    inner = Starlette(routes=routes, exception_handlers={Stopped: _stopping, HTTPException: _plain})
    return _Gate(inner, token)


class _Gate:
    """Refuses everything without the token (404, the same for every path) and what no route takes."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode("ascii")
        self.prefix = b"/" + self.token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # websockets: nothing here speaks them
            return await send({"type": "websocket.close", "code": 1008})
        send = _with_headers(send)
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        given, slash, rest = raw[1:].partition(b"/")
        if not hmac.compare_digest(given, self.token):
            return await PlainTextResponse("Not Found", 404)(scope, receive, send)
        if len(raw) + len(scope.get("query_string", b"")) > MAX_TARGET:
            return await PlainTextResponse("URI Too Long", 414)(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            return await PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET, HEAD"})(
                scope, receive, send)
        headers = dict(scope["headers"])
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            return await PlainTextResponse("Content Too Large", 413)(scope, receive, send)
        if not slash:  # /TOKEN: the page's relative links need /TOKEN/
            return await RedirectResponse(self.prefix.decode() + "/", 308)(scope, receive, send)
        inner = dict(scope, raw_path=b"/" + rest, path=scope["path"][len(self.prefix):])
        return await self.app(inner, receive, send)


def _with_headers(send):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), *SECURITY_HEADERS])
        await send(message)

    return wrapped


async def _track(site: Site, entry: Entry):
    outcome = await site.renders.track(entry)
    if outcome.track is None:
        raise _Unavailable(outcome)
    return outcome.track


class _Unavailable(HTTPException):
    def __init__(self, outcome: Outcome):
        super().__init__(503, "\n".join(outcome.problems) or outcome.error or "not rendered")


def _unavailable(outcome: Outcome) -> Response:
    return _plain(None, _Unavailable(outcome))


async def _stopping(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("the server is stopping", 503)


def _plain(request: Request | None, exc: HTTPException) -> Response:
    text = exc.detail if exc.status_code == 503 else {404: "Not Found"}.get(exc.status_code, exc.detail)
    return PlainTextResponse(text + "\n", exc.status_code)


def _etag(key: str, kind: str) -> str:
    return f'"{key}-{kind}"'


def _bytes(request: Request, body: bytes, media_type: str) -> Response:
    """`body` with an ETag of its own bytes; a 304 to a reader who has them."""
    etag = _etag(hashlib.sha256(body).hexdigest()[:32], "b")
    headers = {"etag": etag, "cache-control": "no-cache"}
    if _fresh(request, etag, None):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _file(request: Request, path, media_type: str, key: str, filename: str | None = None) -> Response:
    """A file of the render `key` with Range support (Starlette's FileResponse), ETag and Last-Modified.

    The ETag names the render and the file's time: a render made again (the
    cache emptied meanwhile) never passes for the bytes a reader has.
    """
    stat = path.stat()
    etag = _etag(f"{key}-{stat.st_mtime_ns}", path.suffix.lstrip("."))
    headers = {"etag": etag, "cache-control": "no-cache"}
    if _fresh(request, etag, stat.st_mtime):
        return Response(status_code=304, headers={**headers, "last-modified": formatdate(stat.st_mtime, usegmt=True)})
    return FileResponse(path, media_type=media_type, headers=headers, stat_result=stat, filename=filename)


def _fresh(request: Request, etag: str, mtime: float | None) -> bool:
    """Whether the reader's copy (If-None-Match, else If-Modified-Since) is this one."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None or mtime is None:
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False
