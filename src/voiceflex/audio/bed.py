"""A routine's sound bed: its source in the cache (decoded once, or generated), looped, ducked, levelled.

A bed's samples live in one raw int16 file in the cache, read a chunk at a
time: a file is decoded by ffmpeg (its own process) straight into it, a
built-in bed is generated into it.  Beside it, what the level plan needs
and would otherwise read the whole bed for: its loudness, true peak and
K-weighted energy per 100 ms hop over one pass and one loop.

How the bed covers the track: a file of N samples plays once up to P (N
less the crossfade X, down to a whole hop), then loops over [0, P) with its
first X samples crossfaded with the X after P, so each seam runs from the
file's own sample P-1 into its own sample P.  A generated bed is an exact
loop (X = 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voiceflex import files
from voiceflex.audio import bedgen
from voiceflex.audio.duck import Envelope, envelope
from voiceflex.audio.loudness import HOP, K_TAIL, from_db, gated_loudness, hop_energies, k_weight, true_peak
from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.errors import Diagnostic, RoutineError, UsageError, VoiceflexError
from voiceflex.programs import ffmpeg_path, last_line
from voiceflex.routine.model import BEDS, Background
from voiceflex.timeline import Timeline

# Part of every cache key: bump it when what a bed's files hold changes.
BED_VERSION = 2  # 2: the brown noise and the drone have their air
XFADE = ms_to_samples(1500)  # a whole number of hops
MIN_SECONDS = 4  # a file shorter than this is no bed
_READ = 1 << 20  # bytes of ffmpeg's output read at a time
_STATS_CHUNK = 30 * HOP


class BedError(VoiceflexError):
    """A bed's file could not be decoded to the end."""


@dataclass(frozen=True)
class Source:
    """A bed's samples on disk and what was measured of them (at unit level)."""

    path: Path  # raw int16 samples
    length: int  # N
    period: int  # P
    xfade: int  # X
    loudness: float  # LUFS of one loop
    peak: float  # true peak of a pass and a loop
    first_hops: np.ndarray  # K-weighted energy per hop of samples [0, P)
    loop_hops: np.ndarray  # and of [P, 2P), what every later loop repeats

    def samples(self, a: int, b: int) -> np.ndarray:
        """The bed's samples [a, b) of the track, float32 in [-1, 1]."""
        out = np.empty(max(b - a, 0), np.float32)
        with open(self.path, "rb") as f:
            at = a
            while at < b:
                if at < self.period:
                    first, n = at, min(b, self.period) - at
                else:
                    first = (at - self.period) % self.period
                    n = min(b - at, (self.xfade if first < self.xfade else self.period) - first)
                if at >= self.period and first < self.xfade:
                    out[at - a:at - a + n] = self._seam(f, first, n)
                else:
                    out[at - a:at - a + n] = _read(f, first, n)
                at += n
        return out

    def _seam(self, f, first: int, n: int) -> np.ndarray:
        """Loop samples [first, first + n) inside the crossfade: the file's tail fading into its start."""
        u = (np.arange(first, first + n) + 0.5) / self.xfade
        fade_in = np.sin(0.5 * np.pi * u) ** 2  # equal gain: the two ends are the same music
        return (_read(f, self.period + first, n) * (1.0 - fade_in) + _read(f, first, n) * fade_in
                ).astype(np.float32)

    def hop_energy(self, hop_count: int) -> np.ndarray:
        """K-weighted energy per hop of the looped bed over a track of `hop_count` hops."""
        first = len(self.first_hops)
        if hop_count <= first:
            return self.first_hops[:hop_count].copy()
        reps = -(-(hop_count - first) // len(self.loop_hops))
        return np.concatenate([self.first_hops, np.tile(self.loop_hops, reps)])[:hop_count]


@dataclass(frozen=True)
class Bed:
    """A bed as one track mixes it: its source, its envelope, its level under the voice (dB)."""

    source: Source
    envelope: Envelope
    level_db: float
    key: str  # names the source, level and envelope settings: part of the level memo's key

    def scale(self, target_lufs: float) -> float:
        """The factor that puts the bed at `level_db` under cues levelled to `target_lufs`."""
        return from_db(target_lufs + self.level_db - self.source.loudness)

    def chunk(self, a: int, b: int, scale: float) -> np.ndarray:
        """Samples [a, b) of the bed at `scale`, ducked and faded (float32)."""
        return self.source.samples(a, b) * self.envelope.gain(a, b) * np.float32(scale)

    def hop_energy(self, hop_count: int, scale: float) -> np.ndarray:
        """The bed's K-weighted energy per hop in the mix (its envelope applied per hop)."""
        return self.source.hop_energy(hop_count) * self.envelope.mean_square_per_hop(hop_count) * scale ** 2

    def peak(self, a: int, b: int, scale: float) -> float:
        """An upper bound of the bed's true peak within [a, b)."""
        return self.source.peak * scale * self.envelope.most(a, b)


def chosen(background: Background | None, music: str | None) -> Background | None:
    """A routine's `background`, with `--music` (a file, a built-in bed's name, "none") over its sound."""
    if music is None:
        return background
    if music == "none":
        return None
    base = background or Background(music)
    if music in BEDS:
        return replace(base, sound=music, location=None)
    if not os.path.isfile(music):
        raise UsageError(f"--music {music}: no such file (or a built-in bed: {', '.join(BEDS)}, or none)")
    return replace(base, sound=os.path.realpath(music), location=None)


def bed_for(background: Background, timeline: Timeline, cache_dir: Path) -> Bed:
    """The bed `background` asks for under `timeline`, its source prepared in `cache_dir` if new."""
    source, source_key = prepare(background, cache_dir)
    key = json.dumps([source_key, background.level, background.duck, background.duck_tones])
    return Bed(source, envelope(timeline, background.duck, background.duck_tones), background.level, key)


def prepare(background: Background, cache_dir: Path) -> tuple[Source, str]:
    """The source of `background.sound` in `cache_dir`, made if not there, and its key."""
    sound = background.sound
    if sound in BEDS:
        key = hashlib.sha256(json.dumps([BED_VERSION, "generated", sound, RATE]).encode()).hexdigest()
    else:
        key = hashlib.sha256(json.dumps([BED_VERSION, "file", _file_digest(background), RATE]).encode()
                             ).hexdigest()
    folder = Path(cache_dir) / key[:40]
    source = _open(folder)
    if source is None:
        _make(folder, background)
        source = _open(folder)
        if source is None:
            raise VoiceflexError(f"the bed's cache in {folder} could not be read back")
    return source, key


def _make(folder: Path, background: Background) -> None:
    """Decode or generate the bed into a folder beside `folder`, measure it, and move it in whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = files.temp_dir(folder.parent)  # and what killed makers left is swept
    try:
        raw = temp / "bed.s16"
        if background.sound in BEDS:
            loop = bedgen.generate(background.sound)
            raw.write_bytes(np.rint(loop * 32767.0).astype("<i2").tobytes())
            length, period, xfade = len(loop), len(loop), 0
        else:
            length = _decode(background, raw)
            if length < MIN_SECONDS * RATE:
                raise _bad(background, f"is {length / RATE:.1f} s long; a bed needs at least {MIN_SECONDS} s")
            period = (length - XFADE) // HOP * HOP
            xfade = XFADE
        _measure(temp, Source(raw, length, period, xfade, 0.0, 0.0, np.zeros(0), np.zeros(0)))
        if _open(folder) is None:  # a damaged entry; a sound one another process just made stays
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(temp, folder)
        except OSError:  # another process got there first: theirs is the same
            pass
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _measure(folder: Path, source: Source) -> None:
    """Loudness, true peak and energy per hop of a pass and a loop, streamed a chunk at a time."""
    energies, peak = [], 0.0
    for a in range(0, 2 * source.period, _STATS_CHUNK):
        b = min(a + _STATS_CHUNK, 2 * source.period)
        pre = min(a, K_TAIL)  # the K filter's memory, run in from before the chunk
        x = source.samples(a - pre, b)
        energies.append(hop_energies(k_weight(x, tail=0)[pre:]))
        peak = max(peak, true_peak(x))
    hops = np.concatenate(energies)
    first, loop = hops[:source.period // HOP], hops[source.period // HOP:]
    meta = {"version": BED_VERSION, "length": source.length, "period": source.period,
            "xfade": source.xfade, "loudness": gated_loudness(loop), "peak": peak}
    np.save(folder / "hops.npy", np.stack([first, loop]))
    (folder / "bed.json").write_text(json.dumps(meta), encoding="utf-8")


def _open(folder: Path) -> Source | None:
    """The source kept in `folder`, or None when there is none (or it is damaged)."""
    try:
        meta = json.loads((folder / "bed.json").read_text(encoding="utf-8"))
        hops = np.load(folder / "hops.npy", allow_pickle=False)
        raw = folder / "bed.s16"
        length, period = int(meta["length"]), int(meta["period"])
        if (meta["version"] != BED_VERSION or raw.stat().st_size != 2 * length
                or hops.shape != (2, period // HOP) or not 0 < period <= length):
            return None
        return Source(raw, length, period, int(meta["xfade"]), float(meta["loudness"]),
                      float(meta["peak"]), hops[0], hops[1])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _decode(background: Background, raw: Path) -> int:
    """Decode the file into `raw` (int16 mono at RATE), streaming; its length in samples."""

    command = [ffmpeg_path("it decodes background sounds"), "-hide_banner", "-nostdin",
               "-loglevel", "error", "-i", background.sound, "-map", "0:a:0", "-vn",
               "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"]
    with tempfile.TemporaryFile() as err, open(raw, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        written = 0
        try:
            while block := process.stdout.read(_READ):
                out.write(block)
                written += len(block)
        finally:
            process.stdout.close()
            code = process.wait()
        err.seek(0)
        detail = last_line(err.read().decode(errors="replace"))
    if code != 0 and written >= 2 * RATE // 10:
        raise BedError(f"{_named(background)}: ffmpeg stopped decoding it after "
                       f"{written / 2 / RATE:.1f} s: {detail}")
    if code != 0 or written < 2:
        raise _bad(background, f"is not an audio file ffmpeg can read ({detail if code else 'no samples'})")
    return written // 2


def _file_digest(background: Background) -> str:
    """The content hash of the bed's file (a file edited in place is decoded again)."""
    try:
        return files.sha256_of(background.sound)
    except OSError as exc:
        raise _bad(background, f"cannot be read: {exc.strerror or exc}") from None


def _bad(background: Background, problem: str) -> VoiceflexError:
    """A bed file's problem, at its place in the routine (or naming the --music file)."""
    if background.location is not None:
        return RoutineError([Diagnostic(background.location, f"background sound {_named(background)} {problem}")])
    return UsageError(f"--music {background.sound} {problem}")


def _named(background: Background) -> str:
    return f"`{os.path.basename(background.sound)}`" if background.location else background.sound


def _read(f, first: int, n: int) -> np.ndarray:
    """`n` samples of the raw file from sample `first`, as float32 in [-1, 1]."""
    data = os.pread(f.fileno(), 2 * n, 2 * first)
    return np.frombuffer(data, "<i2").astype(np.float32) * np.float32(1.0 / 32768.0)



