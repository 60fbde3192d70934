"""Tracks exported into the cache when first asked for, once however many requests ask at the same time.

A render is keyed by what it is made of: the bytes of the routine file and
of every file it includes, the render settings (engine, voice, rate, bitrate,
music and a music file's bytes) and the voiceflex version.
Each request hashes the routine's files again (they are small), so an edited
routine is rendered anew on the next request, and an unchanged one is
served from the cache, also after a restart.

    renders = Renders(cache_dir, settings)    # config.Settings: engine, voice, rate, bitrate, music
    outcome = await renders.track(entry)     # Outcome: a Rendered track, or its problems
    zip_path = await renders.pack(entry)     # the split pack, rendered on first need
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from voiceflex import __version__, files
from voiceflex.audio.output_format import output_format
from voiceflex.config import KEYS, Settings
from voiceflex.errors import RoutineError, VoiceflexError
from voiceflex.serve.catalog import Entry

FORMAT = 1  # part of every key: bumping it retires every render made before
RETRY_AFTER_S = 10.0  # a render that failed (not the routine's fault) is tried again after this


@dataclass(frozen=True)
class Chapter:
    title: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Rendered:
    """A routine's MP3 in the cache, and what the page and the feed say about it."""

    key: str
    folder: Path
    title: str
    description: str | None
    author: str | None
    duration_ms: int
    chapters: tuple[Chapter, ...]

    @property
    def mp3(self) -> Path:
        return self.folder / "track.mp3"

    @property
    def cover(self) -> Path:
        return self.folder / "cover.png"

    @property
    def pack(self) -> Path:
        return self.folder / "pack.zip"


@dataclass(frozen=True)
class Outcome:
    """What one routine gives now: its track, or what is wrong with it."""

    entry: Entry
    track: Rendered | None = None
    problems: tuple[str, ...] = ()  # the routine's mistakes, each FILE:LINE:COL: message
    error: str | None = None  # anything else: engine, encoder, a missing program


class Stopped(VoiceflexError):
    """The server is stopping: a render in progress gives up (its export leaves nothing behind)."""


# Events for the terminal: ("rendered", entry, outcome, seconds), ("problems", ...), ("error", ...).
OnEvent = Callable[[str, Entry, Outcome, float], None]


@dataclass
class _State:
    sources: tuple[tuple[str, str], ...]
    outcome: Outcome
    when: float = field(default_factory=time.monotonic)


class Renders:
    """The render cache of one server, and the renders under way."""

    def __init__(self, cache_dir: Path, settings: Settings | None = None, *, engine=None,
                 max_renders: int = 2, on_event: OnEvent | None = None):
        self.cache_dir = Path(cache_dir)
        self.settings = settings or Settings()
        self.output = output_format("mp3", self.settings.bitrate)  # every render and pack
        self.engine = engine  # None: the engine each routine names
        self.on_event = on_event
        self.exports = 0  # tracks and packs exported by this process (a test counts them)
        self._pool = ThreadPoolExecutor(max_renders, thread_name_prefix="voiceflex-render")
        self._stop = threading.Event()
        self._states: dict[str, _State] = {}
        self._jobs: dict[tuple[str, str], asyncio.Future] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ---- what requests call (in the event loop) ------------------------------

    async def track(self, entry: Entry) -> Outcome:
        """The routine's current track (rendered now if needed), or its problems."""
        state = self._states.get(entry.id)
        if state is not None and _unchanged(state.sources) and not _retry_due(state) and _still_there(state):
            return state.outcome
        return await self._once(("track", entry.id), self._prepare, entry)

    async def pack(self, entry: Entry) -> Path | Outcome:
        """The routine's split pack (a zip of one MP3 per chapter and an .m3u8), or why there is none."""
        outcome = await self.track(entry)
        if outcome.track is None:
            return outcome
        if outcome.track.pack.is_file():
            return outcome.track.pack
        return await self._once(("pack", outcome.track.key), self._pack, entry, outcome.track)

    def stop(self) -> None:
        """Make renders under way give up at their next chunk, and new ones at once."""
        self._stop.set()

    def close(self) -> None:
        """Stop renders under way and wait for them to clean up."""
        self.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _once(self, job: tuple[str, str], work, *args):
        # Checked and set with no await in between: concurrent requests share one job.
        future = self._jobs.get(job)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
            self._jobs[job] = future
            future.add_done_callback(lambda _: self._jobs.pop(job, None))
        # A client that leaves does not cancel the render the others wait for.
        return await asyncio.shield(future)

    # ---- in a render thread ------------------------------------------------------

    def _prepare(self, entry: Entry) -> Outcome:
        from voiceflex import pipeline
        from voiceflex.routine import read

        started = time.monotonic()
        event, sources = None, ()
        self._check(0, 0)
        try:
            routine, problems = read(entry.ref)
            sources = routine.sources
            if problems:
                raise RoutineError(problems)
            key = self._key(routine)
            with self._lock(key):
                track = self._cached(key)
                if track is None:
                    planned = pipeline.plan(entry.ref, self.settings, engine=self.engine,
                                            on_voice_progress=self._check)
                    sources = planned.routine.sources
                    track = self._render(entry, planned)
                    event = "rendered"
            outcome = Outcome(entry, track)
        except RoutineError as exc:
            outcome, event = Outcome(entry, problems=tuple(str(d) for d in exc.diagnostics)), "problems"
        except Stopped:
            raise
        except VoiceflexError as exc:
            message = f"{exc}" + (f" ({exc.hint})" if exc.hint else "")
            outcome, event = Outcome(entry, error=message), "error"
        except OSError as exc:  # the cache folder is full, read-only or gone
            outcome = Outcome(entry, error=f"cannot write the cache {self.cache_dir}: {exc.strerror or exc}")
            event = "error"
        previous = self._states.get(entry.id)
        self._states[entry.id] = _State(sources, outcome)
        if event and self.on_event and (previous is None or previous.outcome != outcome):
            self.on_event(event, entry, outcome, time.monotonic() - started)
        return outcome

    def _render(self, entry: Entry, planned) -> Rendered:
        """Export `planned` into the cache under the key of exactly the files it was made from."""
        from voiceflex import pipeline
        from voiceflex.export.cover import cover_png

        key = self._key(planned.routine)
        cached = self._cached(key)
        if cached is not None:
            return cached
        routine, timeline = planned.routine, planned.timeline
        with self._scratch() as scratch:
            mp3 = pipeline.export(entry.ref, scratch, self.settings, output=self.output, planned=planned,
                                  on_progress=self._check)
            os.replace(mp3, scratch / "track.mp3")
            png = cover_png(routine.title, routine.author)
            if png is not None:
                (scratch / "cover.png").write_bytes(png)
            meta = {"title": routine.title, "description": routine.description,
                    "author": routine.author, "duration_ms": timeline.duration_ms,
                    "chapters": [c.to_json() for c in timeline.chapters]}
            (scratch / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            self._publish(scratch, self.cache_dir / key)
        self._count()
        cached = self._cached(key)
        if cached is None:
            raise VoiceflexError(f"the render of {entry.ref} vanished from the cache {self.cache_dir}")
        return cached

    def _pack(self, entry: Entry, track: Rendered) -> Path:
        from voiceflex import pipeline

        with self._lock(track.key):
            if track.pack.is_file():
                return track.pack
            planned = pipeline.plan(entry.ref, self.settings, engine=self.engine,
                                    on_voice_progress=self._check)
            if self._key(planned.routine) != track.key:
                raise VoiceflexError(f"{entry.ref} changed while its pack was made; ask again")
            with self._scratch() as scratch:
                playlist = pipeline.export(entry.ref, scratch / "split", self.settings,
                                           output=self.output, split=True, planned=planned, on_progress=self._check)
                temp = scratch / "pack.zip"
                # Stored, not deflated: MP3 does not shrink, and a phone unpacks it at once.
                with zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED) as z:
                    for part in sorted(playlist.parent.iterdir()):
                        z.write(part, f"{entry.id}/{part.name}")
                os.replace(temp, track.pack)
            self._count()
        return track.pack

    def _check(self, done: int, total: int) -> None:
        """A progress callback that ends the render when the server stops."""
        if self._stop.is_set():
            raise Stopped("the server is stopping")

    def _key(self, routine) -> str:
        engine = None if self.engine is None else [self.engine.name, self.engine.version]
        chosen = {k: self.settings.choice(k).value for k in KEYS if k != "output"}
        parts = [FORMAT, __version__, chosen, _file_digest(chosen.get("music")), engine,
                 list(map(list, routine.sources))]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:40]

    def _cached(self, key: str) -> Rendered | None:
        folder = self.cache_dir / key
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if not (folder / "track.mp3").is_file():
                return None
            return Rendered(key, folder, meta["title"], meta["description"], meta["author"],
                            meta["duration_ms"], tuple(Chapter(**c) for c in meta["chapters"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _count(self) -> None:
        with self._locks_lock:
            self.exports += 1

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    def _scratch(self):
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return _Scratch(self.cache_dir)

    @staticmethod
    def _publish(scratch: Path, final: Path) -> None:
        """Move a finished render into place whole; another process's render of the same key wins."""
        try:
            os.rename(scratch, final)
        except OSError:
            if (final / "meta.json").is_file():
                return
            shutil.rmtree(final, ignore_errors=True)  # a damaged entry: this render replaces it
            os.rename(scratch, final)


class _Scratch:
    """A temporary folder inside the cache (so the final rename stays on one file system), always removed."""

    def __init__(self, cache_dir: Path):
        self.path = files.temp_dir(cache_dir)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _unchanged(sources: tuple[tuple[str, str], ...]) -> bool:
    """Whether every file a routine was read from still has the bytes it had."""
    if not sources:
        return False
    for path, digest in sources:
        try:
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    return False
        except OSError:
            return False
    return True


def _retry_due(state: _State) -> bool:
    return state.outcome.error is not None and time.monotonic() - state.when > RETRY_AFTER_S


def _still_there(state: _State) -> bool:
    """Whether the render is still in the cache (someone may have emptied it while serving)."""
    return state.outcome.track is None or state.outcome.track.mp3.is_file()


def _file_digest(name) -> str | None:
    """The sha256 of a music file's bytes (a bed's name or none: None), so a changed file renders anew."""
    if not isinstance(name, str) or not os.path.isfile(name):
        return None
    return files.sha256_of(name)
