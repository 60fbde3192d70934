"""Helpers for the serve tests: tiny routines, a server in a thread, raw HTTP on 127.0.0.1, a headless browser."""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TINY = """\
title: {title}
author: Test Author
description: Two short holds, for tests.
steps:
  - name: Set up
    say: Kneel on your left knee.
  - name: Hold
    hold: 3s
    say: Hold it there.
  - name: Finish
    say: All done.
"""

BROKEN = """\
title: Broken
steps:
  - name: Hold
    hold: 3s
    sayy: Hold it.
"""


def write_routine(folder: Path, name: str, title: str | None = None, text: str | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text if text is not None else TINY.format(title=title or name.title()), encoding="utf-8")
    return path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(url: str, path: str | None = None, *, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None) -> Reply:
    """One HTTP request to 127.0.0.1 with `path` sent exactly as given (no normalising)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"  # the tests never talk to any other address
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        target = path if path is not None else parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@contextlib.contextmanager
def running(server):
    """Run a serve.Server in a thread until the block ends."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=60)
        assert not thread.is_alive()


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--autoplay-policy=no-user-gesture-required")


@contextlib.contextmanager
def chromium(profile: Path, width: int = 390, height: int = 844):
    """Debian's headless Chromium through its own chromedriver (no Selenium Manager, no network)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate, timeout: float = 30.0, step: float = 0.1):
    """The first truthy value of predicate(), polled until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
