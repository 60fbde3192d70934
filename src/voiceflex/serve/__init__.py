"""`voiceflex serve`: routines for a phone on the local network: a page, a podcast feed and the tracks.

    server = Server.open(["hip-flexor-stretch"], host="127.0.0.1", port=0)
    server.url     # http://127.0.0.1:41234/<token>/   (the feed is url + "feed.xml")
    server.run()   # until Ctrl-C or server.stop()

app.py is the web app behind the token, renders.py the render cache, feed.py
and page.py what they show, catalog.py the routines on offer, net.py the
address, token and QR code.
"""

from __future__ import annotations

from pathlib import Path

from voiceflex.serve.net import DEFAULT_PORT, qr_lines
from voiceflex.serve.renders import OnEvent, Outcome, Renders

__all__ = ["DEFAULT_PORT", "Outcome", "Server", "qr_lines"]

MAX_CONNECTIONS = 64  # requests handled at once; more get 503 (a phone opens a handful)


class Server:
    """A bound, not yet running server for a list of routines."""

    def __init__(self, site, app, sock, renders: Renders):
        self.site, self.app, self.sock, self.renders = site, app, sock, renders
        self.url = site.urls.page()
        self._uvicorn = None

    @classmethod
    def open(cls, refs: list[str], *, host: str | None = None, port: int = DEFAULT_PORT,
             keep_token: bool = False, folder: Path | None = None, cache_dir: Path | None = None,
             settings=None, engine=None, max_renders: int = 2,
             on_event: OnEvent | None = None, data_dir: Path | None = None) -> Server:
        """Find the routines, make the token and bind the socket: every mistake shows before serving.

        `refs` empty: the built-in routines and the routine files in `folder`.
        `host` None: the machine's LAN address, else 127.0.0.1.  `settings`
        (config.Settings: engine, voice, rate, bitrate, music) render the tracks.
        """
        _require()
        from voiceflex.serve import catalog, net
        from voiceflex.serve.app import Site, create_app
        from voiceflex import files

        entries = catalog.entries(refs, folder)
        secret = net.token(keep_token, data_dir)
        host = host or net.default_host()
        sock = net.listen(host, port)
        base = f"http://{net.url_host(sock, host)}:{sock.getsockname()[1]}/{secret}/"
        renders = Renders(cache_dir or files.cache_path("serve"), settings, engine=engine,
                          max_renders=max_renders, on_event=on_event)
        site = Site(entries, renders, base)
        return cls(site, create_app(site, secret), sock, renders)

    @property
    def entries(self):
        return list(self.site.entries.values())

    def run(self) -> None:
        """Serve until stopped; renders under way are ended and cleaned up before this returns."""
        import uvicorn

        renders = self.renders

        class _Uvicorn(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                renders.stop()  # waiting requests get their answer now, not after a long render
                super().handle_exit(sig, frame)

        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False,
                                limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=3,
                                server_header=False)
        self._uvicorn = _Uvicorn(config)
        try:
            self._uvicorn.run(sockets=[self.sock])
        finally:
            renders.close()
            self.sock.close()

    def stop(self) -> None:
        """Ask a running server (in another thread) to stop."""
        self.renders.stop()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    @property
    def started(self) -> bool:
        return self._uvicorn is not None and self._uvicorn.started


def _require() -> None:
    """The serve extra's packages, or one line saying how to install them."""
    import importlib.util

    from voiceflex.errors import MissingComponentError

    missing = [m for m in ("starlette", "uvicorn", "qrcode") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingComponentError(f"`voiceflex serve` needs {', '.join(missing)}",
                                    hint="install them with: pip install 'voiceflex[serve]'")
