"""voiceflex serve on 127.0.0.1 with the fake voice engine: feed, page, Range, ETag, token, renders, safety."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import zipfile
from xml.etree import ElementTree
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest

from helpers.serving import BROKEN, request, running, write_routine
from voiceflex import files, pipeline
from voiceflex.serve import Server, net
from voiceflex.serve.catalog import entries


@pytest.fixture
def routines(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "routines"
    folder.mkdir()
    return [write_routine(folder, "tiny-one", "Tiny one"), write_routine(folder, "tiny-two", "Tiny two")]


@pytest.fixture
def events() -> list:
    return []


@pytest.fixture
def server(tmp_path, routines, fake_engine, events):
    s = Server.open([str(p) for p in routines], host="127.0.0.1", port=0, engine=fake_engine,
                    cache_dir=tmp_path / "cache", on_event=lambda *e: events.append(e))
    with running(s):
        yield s


def test_feed_lists_every_routine_with_exact_enclosures_and_plan_chapters(server, routines, fake_engine):
    reply = request(server.url + "feed.xml")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/rss+xml")
    feed = feedparser.parse(reply.body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title == "voiceflex routines"
    # Apple asks for true/false (feedparser maps only yes/clean): read the element itself.
    channel = ElementTree.fromstring(reply.body).find("channel")
    assert channel.findtext("{http://www.itunes.com/dtds/podcast-1.0.dtd}explicit") == "false"
    assert channel.findtext("{http://www.itunes.com/dtds/podcast-1.0.dtd}author") == "voiceflex"
    assert feed.feed.image.href == server.url + "cover.png"
    assert [e.title for e in feed.entries] == ["Tiny one", "Tiny two"]
    for entry, path in zip(feed.entries, routines, strict=True):
        (enclosure,) = entry.enclosures
        mp3 = request(enclosure.href)
        assert mp3.status == 200 and mp3.body[:3] == b"ID3"
        assert enclosure.type == "audio/mpeg"
        assert int(enclosure.length) == len(mp3.body) == int(mp3.headers["content-length"])
        planned = pipeline.plan(str(path), engine=fake_engine)
        assert int(entry.itunes_duration) == round(planned.timeline.duration_ms / 1000)
        assert entry.description == "Two short holds, for tests."
        assert entry.id.startswith("voiceflex-") and entry.guidislink is False
        chapters_url = entry.podcast_chapters["url"]
        assert entry.podcast_chapters["type"] == "application/json+chapters"
        chapters = json.loads(request(chapters_url).body)
        assert chapters["version"] == "1.2.0"
        assert [(c["title"], c["startTime"], c["endTime"]) for c in chapters["chapters"]] == [
            (c.title, c.start_ms / 1000, c.end_ms / 1000) for c in planned.timeline.chapters]
        art = request(entry.image.href)
        assert art.status == 200 and art.body[:8] == b"\x89PNG\r\n\x1a\n"


def test_guid_stays_with_the_content_and_an_edit_is_rendered_again(server, routines, events):
    first = feedparser.parse(request(server.url + "feed.xml").body)
    again = feedparser.parse(request(server.url + "feed.xml").body)
    assert [e.id for e in first.entries] == [e.id for e in again.entries]
    assert server.renders.exports == 2
    routines[0].write_text(routines[0].read_text().replace("hold: 3s", "hold: 5s"))
    edited = feedparser.parse(request(server.url + "feed.xml").body)
    assert edited.entries[0].id != first.entries[0].id
    assert edited.entries[1].id == first.entries[1].id  # the other routine is untouched
    assert int(edited.entries[0].itunes_duration) == int(first.entries[0].itunes_duration) + 2
    assert server.renders.exports == 3
    assert [e[0] for e in events] == ["rendered", "rendered", "rendered"]


def test_an_included_file_that_changes_is_rendered_again(tmp_path, fake_engine):
    folder = tmp_path / "inc"
    folder.mkdir()
    (folder / "part.yaml").write_text("steps:\n  - say: Breathe out slowly.\n")
    main = write_routine(folder, "main", text="title: Main\nsteps:\n  - name: Start\n    say: Begin.\n"
                                                "  - include: part.yaml\n")
    s = Server.open([str(main)], host="127.0.0.1", port=0, engine=fake_engine, cache_dir=tmp_path / "c")
    with running(s):
        before = feedparser.parse(request(s.url + "feed.xml").body).entries[0]
        (folder / "part.yaml").write_text("steps:\n  - say: Breathe out very slowly now.\n")
        after = feedparser.parse(request(s.url + "feed.xml").body).entries[0]
    assert after.id != before.id and int(after.enclosures[0].length) != int(before.enclosures[0].length)


def test_ten_concurrent_first_feed_requests_render_each_routine_once(server, routines):
    replies: list = [None] * 10

    def fetch(i: int) -> None:
        replies[i] = request(server.url + "feed.xml")

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == 200 for r in replies)
    assert len({r.body for r in replies}) == 1  # ten identical feeds
    assert server.renders.exports == len(routines)
    renders = [p for p in server.renders.cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(renders) == len(routines)
    assert not [p for p in server.renders.cache_dir.iterdir() if files.TEMP_FILE.match(p.name)]


def test_range_requests_get_206_with_exactly_the_bytes_asked_for(server):
    url = server.url + "audio/tiny-one.mp3"
    whole = request(url)
    size = len(whole.body)
    assert whole.headers["accept-ranges"] == "bytes"
    for header, lo, hi in (("bytes=100-199", 100, 199), ("bytes=0-0", 0, 0),
                           (f"bytes={size - 10}-", size - 10, size - 1), ("bytes=-50", size - 50, size - 1)):
        part = request(url, headers={"Range": header})
        assert part.status == 206, header
        assert part.body == whole.body[lo:hi + 1], header
        assert part.headers["content-range"] == f"bytes {lo}-{hi}/{size}"
        assert int(part.headers["content-length"]) == hi - lo + 1
    assert request(url, headers={"Range": f"bytes={size}-"}).status == 416
    head = request(url, method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) == size
    # If-Range: a range only from the same file; a stale validator gets the whole file.
    etag = whole.headers["etag"]
    assert request(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status == 206
    stale = request(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status == 200 and stale.body == whole.body


def test_etag_and_last_modified_give_304(server):
    for path in ("audio/tiny-one.mp3", "feed.xml", "", "chapters/tiny-two.json", "cover/tiny-one.png"):
        first = request(server.url + path)
        assert first.status == 200 and first.headers["etag"], path
        assert request(server.url + path, headers={"If-None-Match": first.headers["etag"]}).status == 304
        assert request(server.url + path, headers={"If-None-Match": '"nope"'}).status == 200
    mp3 = request(server.url + "audio/tiny-one.mp3")
    since = {"If-Modified-Since": mp3.headers["last-modified"]}
    assert request(server.url + "audio/tiny-one.mp3", headers=since).status == 304
    assert request(server.url + "audio/tiny-one.mp3", headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"}).status == 200


def test_without_the_token_everything_is_404(server):
    token = server.url.rstrip("/").rsplit("/", 1)[1]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    base = server.url.split(token)[0]
    replies = [request(base + p) for p in (
        "", "feed.xml", "favicon.ico", f"{wrong}/", f"{wrong}/feed.xml", f"{token[:-1]}/feed.xml",
        f"{token}x/feed.xml", "audio/tiny-one.mp3", f"x/{token}/feed.xml")]
    assert {r.status for r in replies} == {404}
    assert len({r.body for r in replies}) == 1
    assert request(base + "feed.xml", method="POST", body=b"x").status == 404
    assert server.renders.exports == 0  # nothing was rendered for them


def test_traversal_and_unknown_names_reach_no_file(server, routines):
    prefix = urlsplit(server.url).path.rstrip("/")  # /TOKEN
    attempts = [
        "/audio/../../../../etc/passwd", "/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd.mp3",
        "/audio/..%2F..%2F..%2Fetc%2Fpasswd.mp3", "/audio/tiny-one.yaml", "/audio/tiny-one.mp3%00.yaml",
        f"/audio/{routines[0]}.mp3", "/audio/%2Fetc%2Fpasswd.mp3", "//etc/passwd", "/../../etc/passwd",
        "/cover/..%2Fmeta.json.png", "/chapters/../feed.xml.json", "/pack/%2e%2e.zip", "/audio/.mp3",
        "/audio/TINY-ONE.mp3", "/page.html", "/renders.py", "/routines/tiny-one.yaml", "/audio\\..\\x.mp3",
    ]
    for path in attempts:
        reply = request(server.url, prefix + path)
        assert reply.status in (400, 404), path
        assert b"root:" not in reply.body and b"steps:" not in reply.body, path


def test_requests_beyond_the_limits_are_refused(server):
    assert request(server.url + "feed.xml", method="POST", body=b"{}").status == 405
    assert request(server.url + "feed.xml", method="PUT").status == 405
    assert request(server.url + "feed.xml", headers={"Content-Length": "5"}, body=b"hello").status == 413
    assert request(server.url + "feed.xml?" + "a" * 5000).status == 414
    no_slash = request(server.url.rstrip("/"))
    assert no_slash.status == 308 and no_slash.headers["location"].endswith("/")
    page = request(server.url)
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_page_lists_routines_and_a_broken_one_shows_its_located_problems(tmp_path, routines, fake_engine):
    broken = write_routine(routines[0].parent, "broken", text=BROKEN)
    seen: list = []
    s = Server.open([str(routines[0]), str(broken)], host="127.0.0.1", port=0, engine=fake_engine,
                    cache_dir=tmp_path / "cache", on_event=lambda *e: seen.append(e))
    with running(s):
        page = request(s.url).body.decode()
        feed = feedparser.parse(request(s.url + "feed.xml").body)
        audio = request(s.url + "audio/broken.mp3")
    assert "Tiny one" in page and "0:00" in page
    problem = f"{broken}:5:5: unknown key `sayy`"
    assert problem in page
    assert [e.title for e in feed.entries] == ["Tiny one"]  # the other routine still works
    assert audio.status == 503 and problem in audio.body.decode()
    kinds = {e[0]: e for e in seen}
    assert problem in "\n".join(kinds["problems"][2].problems)


def test_split_pack_is_a_zip_of_chapter_files_and_their_playlist(server):
    reply = request(server.url + "pack/tiny-one.zip")
    assert reply.status == 200 and reply.headers["content-type"] == "application/zip"
    assert 'filename="tiny-one.zip"' in reply.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(reply.body)) as z:
        names = z.namelist()
        playlist = [n for n in names if n.endswith(".m3u8")]
        assert len(playlist) == 1
        listed = [line for line in z.read(playlist[0]).decode().splitlines() if line and not line.startswith("#")]
        assert sorted(f"tiny-one/{n}" for n in listed) == sorted(n for n in names if n.endswith(".mp3"))
        assert len(listed) == 3 and all(z.read(f"tiny-one/{n}")[:3] == b"ID3" for n in listed)
    assert request(server.url + "pack/tiny-one.zip").body == reply.body  # made once, then served
    assert server.renders.exports == 2  # the track and its pack


def test_default_routines_are_the_builtins_and_the_folders_routine_files(tmp_path):
    write_routine(tmp_path, "mine", "Mine")
    (tmp_path / "compose.yaml").write_text("services:\n  web: {}\n")  # not a routine
    (tmp_path / "elsewhere").mkdir()
    outside = write_routine(tmp_path / "elsewhere", "outside")
    (tmp_path / "link.yaml").symlink_to(outside)  # a link out of the folder is not offered
    ids = [e.id for e in entries([], tmp_path)]
    assert ids == ["desk-reset", "hip-flexor-stretch", "lacrosse-ball-release", "mine"]
    same = [e.id for e in entries(["hip-flexor-stretch", str(write_routine(tmp_path, "hip-flexor-stretch"))])]
    assert same == ["hip-flexor-stretch", "hip-flexor-stretch-2"]


def test_kept_token_is_the_same_next_time_and_private(tmp_path):
    first = net.token(True, tmp_path)
    assert net.token(True, tmp_path) == first
    assert stat.S_IMODE(os.stat(tmp_path / net.TOKEN_FILE).st_mode) == 0o600
    fresh = {net.token(False) for _ in range(5)}
    assert len(fresh) == 5 and first not in fresh and all(len(t) >= 32 for t in fresh)


def test_only_a_private_address_is_taken_as_the_lan_address():
    assert net.is_lan("192.168.1.20") and net.is_lan("10.0.0.7") and net.is_lan("172.16.3.4")
    assert not net.is_lan("127.0.0.1") and not net.is_lan("8.8.8.8") and not net.is_lan("0.0.0.0")
    # Asking the route to a loopback address (no packet is sent) gives loopback: not a LAN address.
    assert net.lan_address(("127.0.0.1", 9)) is None


def test_a_port_in_use_is_one_clear_error(server):
    from voiceflex.errors import ServeError

    port = int(server.url.split(":")[2].split("/")[0])
    with pytest.raises(ServeError, match=f"port {port} on 127.0.0.1 is in use"):
        net.listen("127.0.0.1", port)


def test_qr_code_reads_back_as_the_address():
    import qrcode

    url = "http://192.168.1.20:8765/abcdefghijklmnopqrstuvwxyz012345/"
    lines = net.qr_lines(url)
    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(url)
    qr.make(fit=True)
    dark = qr.get_matrix()
    light_top = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    read = []
    for line in lines:
        pairs = [light_top[ch] for ch in line]
        read.append([not top for top, _ in pairs])
        read.append([not bottom for _, bottom in pairs])
    assert read[:len(dark)] == dark
    assert len(lines) == (len(dark) + 1) // 2 and all(len(line) == len(dark) for line in lines)


def test_cover_shows_the_author_and_leaves_out_what_no_font_has():
    from PIL import Image

    from voiceflex.export import fonts
    from voiceflex.export.cover import cover_png

    def pixels(png: bytes):
        return Image.open(io.BytesIO(png)).convert("RGB").tobytes()

    plain = cover_png("Hip stretch")
    assert pixels(cover_png("Hip stretch", "Ann Author")) != pixels(plain)
    # A character no installed font has is left out: no box drawn for it.
    assert pixels(cover_png("Hip stretch \U000F0001")) == pixels(plain)
    chain = fonts.faces(fonts.BOLD)
    cjk = [face for piece, face in fonts.runs("Hip 股関節", chain) if "股" in piece]
    assert cjk and "CJK" in cjk[0].path  # drawn in a font that has it
    assert pixels(cover_png("Hip stretch 股関節")) != pixels(plain)
    emoji = [face for piece, face in fonts.runs("Calm 🧘", chain) if "🧘" in piece]
    assert emoji and emoji[0].bitmap
    assert pixels(cover_png("Hip stretch 🧘")) != pixels(plain)


def test_a_render_removed_from_the_cache_is_made_again(server):
    import shutil

    first = request(server.url + "audio/tiny-one.mp3")
    for folder in server.renders.cache_dir.iterdir():
        shutil.rmtree(folder)
    again = request(server.url + "audio/tiny-one.mp3")
    assert again.status == 200 and len(again.body) == len(first.body)
    assert server.renders.exports == 2


def test_cli_serve_refuses_a_routine_that_does_not_exist(capsys):
    from voiceflex.cli import main

    assert main(["serve", "no-such-routine", "--host", "127.0.0.1", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no routine file or built-in routine named `no-such-routine`" in err and "Traceback" not in err


def test_a_render_under_way_stops_with_the_server_and_leaves_nothing(tmp_path, routines, fake_engine,
                                                                     monkeypatch):
    import asyncio

    from voiceflex.serve.renders import Renders, Stopped

    renders = Renders(tmp_path / "cache", engine=fake_engine)
    real_export = pipeline.export
    started = []

    def export_stopped_meanwhile(*args, **kwargs):
        started.append(args[0])
        renders.stop()  # Ctrl-C arrives while the encoder runs
        return real_export(*args, **kwargs)

    monkeypatch.setattr(pipeline, "export", export_stopped_meanwhile)
    (entry,) = entries([str(routines[0])])
    with pytest.raises(Stopped):
        asyncio.run(renders.track(entry))
    renders.close()
    assert started == [str(routines[0])]
    assert list((tmp_path / "cache").rglob("*")) == []  # no render, no scratch folder, no part file
    assert renders.exports == 0


def test_routine_text_cannot_inject_markup_into_the_page_or_the_feed(tmp_path, fake_engine):
    hostile = '</script><script>alert(1)</script> & "quotes"'
    path = write_routine(tmp_path, "hostile", text=f"title: '{hostile}'\ndescription: <b>bold</b>\n"
                                                   "steps:\n  - name: '<img src=x>'\n    say: Hello.\n")
    s = Server.open([str(path)], host="127.0.0.1", port=0, engine=fake_engine, cache_dir=tmp_path / "c")
    with running(s):
        page = request(s.url).body.decode()
        feed = feedparser.parse(request(s.url + "feed.xml").body)
    assert "<script>alert" not in page and "<img src=x>" not in page and "<b>bold" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    data = page.split('id="data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)[0]["title"] == hostile  # intact inside the data block, with "<" escaped
    assert feed.entries[0].title == hostile and not feed.bozo


def test_routines_of_the_current_folder_are_named_by_their_file_names(tmp_path, monkeypatch):
    write_routine(tmp_path, "mine", "Mine")
    monkeypatch.chdir(tmp_path)
    (mine,) = [e for e in entries([], Path.cwd()) if e.id == "mine"]
    assert mine.ref == "mine.yaml" and mine.path == (tmp_path / "mine.yaml").resolve()


def test_a_routine_file_removed_while_serving_shows_why_and_the_others_play(server, routines, events):
    request(server.url + "feed.xml")
    routines[0].unlink()
    page = request(server.url).body.decode()
    assert "no such routine file" in page and "Tiny two" in page
    assert [e.title for e in feedparser.parse(request(server.url + "feed.xml").body).entries] == ["Tiny two"]
    assert request(server.url + "audio/tiny-two.mp3").status == 200
    assert [e[0] for e in events].count("error") == 1  # told once, not at every request


def test_no_more_than_the_limit_of_renders_run_at_once(tmp_path, fake_engine, monkeypatch):
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    paths = [str(write_routine(folder, f"tiny-{i}", f"Tiny {i}")) for i in range(5)]
    active, most, lock = [0], [0], threading.Lock()
    real_export = pipeline.export

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.3)  # long enough for the other renders to pile up, were they allowed to
            return real_export(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(pipeline, "export", counted)
    s = Server.open(paths, host="127.0.0.1", port=0, engine=fake_engine, cache_dir=tmp_path / "c",
                    max_renders=2)
    with running(s):
        feed = feedparser.parse(request(s.url + "feed.xml").body)
    assert len(feed.entries) == 5 and s.renders.exports == 5
    assert 1 <= most[0] <= 2


def test_a_damaged_cache_entry_is_replaced_and_a_read_only_cache_is_reported(server, tmp_path, fake_engine):
    first = feedparser.parse(request(server.url + "feed.xml").body)
    key = first.entries[0].id.removeprefix("voiceflex-")
    (server.renders.cache_dir / key / "meta.json").unlink()  # damaged: the track alone
    server.renders._states.clear()  # as after a restart
    again = feedparser.parse(request(server.url + "feed.xml").body)
    assert again.entries[0].id == first.entries[0].id and server.renders.exports == 3
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    s = Server.open([str(server.entries[0].path)], host="127.0.0.1", port=0, engine=fake_engine,
                    cache_dir=blocked / "cache")
    with running(s):
        page = request(s.url).body.decode()
    assert "cannot write the cache" in page


def test_the_config_settings_render_the_tracks_and_key_them(tmp_path, routines, fake_engine):
    from voiceflex.config import Settings

    def first_item(settings):
        s = Server.open([str(routines[0])], host="127.0.0.1", port=0, engine=fake_engine,
                        cache_dir=tmp_path / "cache", settings=settings)
        with running(s):
            return feedparser.parse(request(s.url + "feed.xml").body).entries[0]

    none = tmp_path / "no-config.toml"
    default = first_item(Settings.load(none))
    low = first_item(Settings.load(none, bitrate="32k"))
    assert low.id != default.id  # another render, not the cached one
    assert int(low.enclosures[0].length) < int(default.enclosures[0].length)
    assert first_item(Settings.load(none)).id == default.id
