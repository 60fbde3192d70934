"""`python -m voiceflex serve` for real: the real voice engine and encoder, raw HTTP, headless Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import feedparser
import pytest
from mutagen.id3 import ID3

from voiceflex import files

from helpers.serving import BROKEN, chromium, request, wait_for, write_routine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Served:
    """A `voiceflex serve` process and what it printed, line by line."""

    def __init__(self, args: list[str], cwd: Path, home: Path):
        env = dict(os.environ, VOICEFLEX_CACHE_DIR=str(home / "cache"), XDG_DATA_HOME=str(home / "data"),
                   PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1", NO_COLOR="1")
        self.process = subprocess.Popen([sys.executable, "-m", "voiceflex", "serve", *args],
                                        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, l=lines: l.extend(iter(s.readline, "")), daemon=True).start()
        found = wait_for(lambda: next((m for line in self.out if (m := re.search(r"page: (\S+)", line))), None)
                         or self.process.poll() is not None, timeout=60)
        assert found and not isinstance(found, bool), (self.out, self.err)
        self.url = found.group(1)

    def rendered(self) -> list[str]:
        return [line.split()[1].rstrip(":") for line in self.out if line.startswith("rendered ")]

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    write_routine(folder, "tiny-one", "Tiny one")
    write_routine(folder, "tiny-two", "Tiny two")
    write_routine(folder, "broken", text=BROKEN)
    s = Served(["tiny-one.yaml", "broken.yaml", "tiny-two.yaml", "--host", "127.0.0.1", "--port", "0"],
               folder, folder)
    s.home = folder
    yield s
    if s.process.poll() is None:
        s.process.kill()
        s.process.wait()


def test_ten_concurrent_first_feed_requests_render_once_and_agree(served):
    assert served.url.startswith("http://127.0.0.1:")
    replies: list = [None] * 10
    threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, request(served.url + "feed.xml")))
               for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status for r in replies} == {200}
    assert len({r.body for r in replies}) == 1
    assert wait_for(lambda: len(served.rendered()) >= 2, timeout=30), (served.out, served.err)
    assert sorted(served.rendered()) == ["tiny-one", "tiny-two"]  # once each, for ten readers
    # The broken routine's mistake, located, in the terminal once; the others work.
    assert [line.strip() for line in served.err if "sayy" in line] == [
        "broken.yaml:5:5: unknown key `sayy` in `hold` step; did you mean `say`?"]
    feed = feedparser.parse(replies[0].body)
    for entry in feed.entries:
        mp3 = request(entry.enclosures[0].href)
        assert int(entry.enclosures[0].length) == len(mp3.body)
        # The real engine's MP3, with its ID3 chapters kept for players that read those.
        path = served.home / "track.mp3"
        path.write_bytes(mp3.body)
        chaps = ID3(path).getall("CHAP")
        assert len(chaps) == 3


def test_token_range_and_page_without_token(served):
    base = served.url.rsplit("/", 2)[0] + "/"
    assert request(base + "feed.xml").status == 404
    assert request(base).status == 404
    whole = request(served.url + "audio/tiny-one.mp3")
    part = request(served.url + "audio/tiny-one.mp3", headers={"Range": "bytes=1000-4999"})
    assert part.status == 206 and part.body == whole.body[1000:5000]
    assert part.headers["content-range"] == f"bytes 1000-4999/{len(whole.body)}"


def test_page_plays_seeks_by_chapter_and_sets_media_session(served, tmp_path):
    chapters = json.loads(request(served.url + "chapters/tiny-one.json").body)["chapters"]
    with chromium(tmp_path / "profile") as driver:
        driver.get(served.url)
        titles = [e.text for e in driver.find_elements("css selector", ".routine h2")]
        assert titles == ["Tiny one", "broken.yaml", "Tiny two"]
        assert "broken.yaml:5:5: unknown key `sayy`" in driver.find_element("css selector", "#r-broken").text
        driver.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("VOICEFLEX_SCREENSHOT"):
            driver.save_screenshot(os.environ["VOICEFLEX_SCREENSHOT"])
        driver.find_element("css selector", '.play[data-id="tiny-one"]').click()
        audio = "document.getElementById('audio')"
        assert wait_for(lambda: driver.execute_script(f"return {audio}.currentTime") > 0.5), \
            driver.execute_script(f"return [{audio}.error && {audio}.error.message, {audio}.readyState]")
        driver.execute_script(f"window.seekedAt = []; {audio}.addEventListener('seeked', "
                              f"() => window.seekedAt.push({audio}.currentTime))")
        driver.find_element("css selector", '.chapter[data-id="tiny-one"][data-index="1"]').click()
        landed = wait_for(lambda: driver.execute_script("return window.seekedAt[0]"))
        assert landed is not None and abs(landed - chapters[1]["startTime"]) < 0.1
        assert wait_for(lambda: driver.execute_script(f"return {audio}.currentTime") > landed + 0.3)
        current = driver.find_elements("css selector", ".chapter.current")
        assert [e.get_attribute("data-index") for e in current] == ["1"]
        meta = driver.execute_script(
            "const m = navigator.mediaSession.metadata; "
            "return m && {title: m.title, artist: m.artist, album: m.album, art: m.artwork.map(a => a.src)}")
        assert meta["title"] == chapters[1]["title"] and meta["artist"] == "Tiny one"
        assert meta["art"] == [served.url + "cover/tiny-one.png"]
        if os.environ.get("VOICEFLEX_SCREENSHOT"):
            driver.save_screenshot(os.environ["VOICEFLEX_SCREENSHOT"].replace(".png", "-playing.png"))
        # What the lock screen's next track does: on to the next chapter, its title on the lock screen.
        driver.execute_script("window.voiceflex.step(1)")
        assert wait_for(lambda: driver.execute_script("return window.voiceflex.chapter") == 2)
        assert driver.execute_script("return navigator.mediaSession.metadata.title") == chapters[2]["title"]
        assert driver.execute_script(f"return {audio}.currentTime") >= chapters[2]["startTime"] - 0.1


def test_ctrl_c_stops_cleanly_even_during_a_render(tmp_path):
    s = Served(["hip-flexor-stretch", "--host", "127.0.0.1", "--port", "0"], tmp_path, tmp_path)
    threading.Thread(target=lambda: request(s.url + "feed.xml"), daemon=True).start()
    wait_for(lambda: list((tmp_path / "cache").rglob("*.part")) or s.rendered(), timeout=60, step=0.05)
    assert s.interrupt() == 0
    assert any("stopped" in line for line in s.err), s.err
    assert not any("Traceback" in line for line in s.err), s.err
    serve_cache = tmp_path / "cache" / "serve"
    leftovers = [p for p in serve_cache.rglob("*") if files.TEMP_FILE.match(p.name) or p.name.endswith(".part")]
    assert leftovers == []
