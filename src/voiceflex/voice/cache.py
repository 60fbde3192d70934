"""Content-addressed store of rendered clips, safe to share between processes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from voiceflex import files
from voiceflex.files import default_cache_dir
from voiceflex.errors import EngineError
from voiceflex.voice.engine import Clip

# Part of every key: bumping it retires all entries written before.
FORMAT_VERSION = 1

# An entry is this header followed by `count` little-endian int16 samples.
# The sha256 of the header's fields before it and of the sample bytes lets a
# torn or damaged entry be recognised, a flipped bit in its rate too.  (Entry
# version 1 hashed the samples alone; such entries read as damaged.)
_MAGIC = b"VFXCLIP\0"
_ENTRY_VERSION = 2
_HEADER = struct.Struct("<8sIIQ32s")  # magic, entry version, rate, count, sha256
_FIELDS = struct.Struct("<8sIIQ")  # what the sha256 covers before the samples
# No cue lasts this long (10 minutes at 48 kHz): a bigger entry is damaged.
MAX_ENTRY_BYTES = _HEADER.size + 10 * 60 * 48_000 * 2
_SAMPLE = np.dtype("<i2")
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


class VoiceCache:
    """Clips on disk, one file per key; a damaged entry reads as missing and is removed."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    @staticmethod
    def key(text: str, engine: str, engine_version: str, voice: str, rate: int) -> str:
        # JSON keeps the parts apart: ("ab", "c") and ("a", "bc") give different keys.
        parts = [FORMAT_VERSION, engine, engine_version, voice, rate, text]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.clip"

    def get(self, key: str) -> Clip | None:
        """The clip stored under `key`, or None if there is none or it was damaged."""
        path = self.path(key)
        try:
            data = files.read(path, MAX_ENTRY_BYTES)
        except OSError as e:
            raise self._error("read", e) from e
        if data is None:
            return None
        clip = _decode(data)
        if clip is None:
            # Never hand out a damaged entry; dropping it makes the cue render again.
            files.remove(path)
        return clip

    def put(self, key: str, clip: Clip) -> Clip:
        """Store `clip` under `key` unless an entry is there already; returns the entry's clip.

        The first rendering stored wins.  pyttsx3 renders one text a few
        percent longer or shorter from one process to the next, so exports
        running at once would otherwise each time the routine with their own
        rendering, and a `plan` could be followed by an export timed with
        another process's rendering.  Readers see no entry or a whole one.
        """
        samples = clip.samples.astype(_SAMPLE, copy=False).tobytes()
        fields = _FIELDS.pack(_MAGIC, _ENTRY_VERSION, clip.rate, len(clip.samples))
        header = fields + _digest(fields, samples)
        tmp_name = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Same folder as the entry, so the link below is atomic.
            with files.temp_file(self.directory) as tmp:
                tmp_name = tmp.name
                tmp.write(header)
                tmp.write(samples)
            return self._publish(tmp_name, key, clip)
        except OSError as e:
            raise self._error("write", e) from e
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)

    def _publish(self, tmp_name: str, key: str, clip: Clip) -> Clip:
        path = self.path(key)
        if path.is_dir() and not path.is_symlink():
            return clip  # a folder in the entry's place: not ours to remove; the cue is not kept
        for _ in range(3):
            try:
                os.link(tmp_name, path)  # fails if the entry exists: never replaces it
                return clip
            except FileExistsError:
                stored = self.get(key)
                if stored is not None:
                    return stored
                # It was damaged (and get() removed it): try again.
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                # A file system without hard links: the last writer wins instead.
                os.replace(tmp_name, path)
                return clip
        os.replace(tmp_name, path)
        return clip

    def sweep(self) -> None:
        """Remove temporary files that writers killed mid-write left in the cache folder."""
        files.sweep(self.directory, files.TEMP_FILE)

    def _error(self, verb: str, e: OSError) -> EngineError:
        reason = e.strerror or str(e)
        return EngineError(
            f"cannot {verb} the voice cache in {self.directory}: {reason}",
            hint="set VOICEFLEX_CACHE_DIR to a folder you can write to",
        )


def _digest(fields: bytes, samples: bytes | memoryview) -> bytes:
    digest = hashlib.sha256(fields)
    digest.update(samples)
    return digest.digest()


def _decode(data: bytes) -> Clip | None:
    if len(data) < _HEADER.size:
        return None
    magic, version, rate, count, digest = _HEADER.unpack_from(data)
    body = memoryview(data)[_HEADER.size :]
    if (
        magic != _MAGIC
        or version != _ENTRY_VERSION
        or rate == 0
        or len(body) != count * _SAMPLE.itemsize
        or _digest(data[: _FIELDS.size], body) != digest
    ):
        return None
    samples = np.frombuffer(body, dtype=_SAMPLE).astype(np.int16, copy=False)
    return Clip(samples, rate)
