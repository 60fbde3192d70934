"""The audio under check: rendered from the plan or decoded from a file, at 22050 and 16000 Hz."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.errors import MissingComponentError, UsageError, VoiceflexError
from voiceflex.programs import FFMPEG_HINT, ffmpeg_path, last_line

RATE_16K = 16_000

# Alignment of a file with the plan, on their first three minutes: envelopes
# in 5 ms blocks find the lag within +-3 s, then the samples of the loudest
# 20 s pin it to one sample.  A start offset is the same all along the file.
ALIGN_SECONDS = 180
ENVELOPE_BLOCK = 110  # samples, ~5 ms
MAX_LAG_MS = 3000
FINE_SECONDS = 20
# Under this normalised correlation the file does not sound like the plan's
# render (another routine, another voice cache); the lag means nothing then.
MIN_MATCH = 0.5


@dataclass(frozen=True)
class Loudness:
    """ffmpeg's ebur128 summary of the audio."""

    integrated_lufs: float
    true_peak_dbtp: float


@dataclass(frozen=True)
class Alignment:
    """How a file lines up with the plan: its lag (positive: the file is late) and length."""

    offset_samples: int | None  # None when the file does not match the render
    match: float  # normalised correlation at that lag, 0..1
    length_samples: int
    planned_samples: int

    @property
    def offset_ms(self) -> float | None:
        return None if self.offset_samples is None else self.offset_samples * 1000 / RATE


def ffmpeg() -> str:
    """The ffmpeg program, or MissingComponentError saying how to install it."""
    return ffmpeg_path("`voiceflex check` measures and decodes audio with it")


def write_raw(chunks: Iterable[np.ndarray], path: Path) -> int:
    """Write int16 chunks to `path` as raw s16le; returns the number of samples."""
    n = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype="<i2").tobytes())
            n += len(chunk)
    return n


def decode(audio: Path, out: Path) -> None:
    """Decode the first audio stream of `audio` to raw s16le mono at 22050 Hz in `out`.

    ffmpeg removes an MP3's encoder delay and padding when the file has a
    Xing/LAME header (as `voiceflex export` writes); without one, the file
    decodes late, and `align` reports by how much.
    """
    if not audio.is_file():
        raise UsageError(f"{audio}: no such file")
    _run([ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(audio),
          "-map", "0:a:0", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-y", str(out)],
         lambda detail: UsageError(f"{audio}: not an audio file ffmpeg can read ({detail})"))


def resample_16k(raw: Path, out: Path) -> None:
    """The raw 22050 Hz track `raw` resampled to 16 kHz (pocketsphinx's rate) in `out`."""
    _run([ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error",
          "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw),
          "-ar", str(RATE_16K), "-f", "s16le", "-y", str(out)],
         lambda detail: VoiceflexError(f"ffmpeg could not resample the track: {detail}"))


class LoudnessMeter:
    """ffmpeg's ebur128 filter measuring a file in the background while the cues are checked.

    ffmpeg measures independently of the exporter's own meter; its true peak
    is from 4x oversampling at the file's rate.
    """

    def __init__(self, source: Path, raw: bool):
        args = ["-f", "s16le", "-ar", str(RATE), "-ac", "1"] if raw else []
        self._process = subprocess.Popen(
            [ffmpeg(), "-hide_banner", "-nostdin", "-nostats", *args, "-i", str(source),
             # framelog=verbose: the 10 lines a second go to a log level not shown, the summary stays
             "-map", "0:a:0", "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result(self) -> Loudness:
        _, err = self._process.communicate()
        text = err.decode(errors="replace")
        if self._process.returncode != 0:
            raise VoiceflexError(f"ffmpeg could not measure loudness: {last_line(text)}")
        return parse_ebur128(text)

    def cancel(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()


def parse_ebur128(stderr: str) -> Loudness:
    """The integrated loudness and true peak from the Summary ffmpeg's ebur128 filter prints."""
    summary = stderr[stderr.rfind("Summary:"):] if "Summary:" in stderr else ""
    integrated = re.search(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+|-inf)\s*LUFS", summary)
    peak = re.search(r"True peak:\s*\n\s*Peak:\s*(-?[\d.]+|-inf)\s*dBFS", summary)
    if not integrated or not peak:
        raise VoiceflexError("could not read ffmpeg's loudness summary (ebur128=peak=true)")
    return Loudness(float(integrated.group(1)), float(peak.group(1)))


def load(path: Path) -> np.ndarray:
    """A raw s16le file as a read-only int16 array, mapped rather than read (tracks can be hours long)."""
    if path.stat().st_size < 2:
        return np.zeros(0, np.int16)
    return np.memmap(path, dtype="<i2", mode="r")


def align(pcm: np.ndarray, reference: Iterable[np.ndarray], planned_samples: int) -> Alignment:
    """Where `pcm` (a decoded file) lines up with `reference` (the plan's render, as chunks)."""
    ref = _head(reference, ALIGN_SECONDS * RATE)
    max_lag = MAX_LAG_MS * RATE // 1000
    x = np.asarray(pcm[:len(ref) + max_lag], dtype=np.float32)
    blocks, match = _best_lag(_envelope(x), _envelope(ref), max_lag // ENVELOPE_BLOCK)
    if match < MIN_MATCH:
        return Alignment(None, match, len(pcm), planned_samples)
    lag, fine_match = _fine_lag(x, ref, blocks * ENVELOPE_BLOCK, ENVELOPE_BLOCK + 1)
    if fine_match < MIN_MATCH:  # no loud stretch to pin it on: keep the envelope's 5 ms
        lag = blocks * ENVELOPE_BLOCK
    return Alignment(lag, max(match, fine_match), len(pcm), planned_samples)


def _head(chunks: Iterable[np.ndarray], n: int) -> np.ndarray:
    """The first `n` samples of a stream of chunks, as float32 (the rest is not rendered)."""
    parts, have = [], 0
    for chunk in chunks:
        parts.append(np.asarray(chunk[:n - have], dtype=np.float32))
        have += len(parts[-1])
        if have >= n:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _envelope(x: np.ndarray) -> np.ndarray:
    """Mean absolute value of each ENVELOPE_BLOCK samples."""
    full = len(x) // ENVELOPE_BLOCK * ENVELOPE_BLOCK
    return np.abs(x[:full]).reshape(-1, ENVELOPE_BLOCK).mean(axis=1)


def _best_lag(x: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag L in +-max_lag maximising sum(x[n + L] * ref[n]), and its normalised value."""
    # Only the common length counts: a file cut short still lines up with the start of the render.
    n = min(len(x), len(ref))
    if n == 0:
        return 0, 0.0
    x, ref = x[:n] - x[:n].mean(), ref[:n] - ref[:n].mean()
    size = 1 << (2 * n).bit_length()
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    values = corr[lags % size]
    i = int(np.argmax(values))
    norm = float(np.sqrt(np.dot(x, x) * np.dot(ref, ref)))
    return int(lags[i]), (float(values[i]) / norm if norm > 0 else 0.0)


def _fine_lag(x: np.ndarray, ref: np.ndarray, centre: int, reach: int) -> tuple[int, float]:
    """The lag within `centre` +- `reach` samples that best matches the loudest stretch of `ref`."""
    # the stretch must lie where every lag tried finds its samples in `x`
    lo = max(0, reach - centre)
    end = min(len(ref), len(x) - centre - reach)
    size = min(FINE_SECONDS * RATE, end - lo)
    if size < ENVELOPE_BLOCK:
        return centre, 0.0
    blocks = size // ENVELOPE_BLOCK
    energy = np.concatenate([[0.0], np.cumsum(_envelope(ref[lo:end]), dtype=np.float64)])
    start = lo + ENVELOPE_BLOCK * int(np.argmax(energy[blocks:] - energy[:-blocks]))
    seg = ref[start:start + size]
    best, best_value = centre, 0.0
    for lag in range(centre - reach, centre + reach + 1):
        y = x[start + lag:start + lag + size]
        norm = float(np.sqrt(np.dot(y, y) * np.dot(seg, seg)))
        value = float(np.dot(y, seg)) / norm if norm > 0 else 0.0
        if value > best_value:
            best, best_value = lag, value
    return best, best_value


def _run(command: list[str], failure) -> None:
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise MissingComponentError("ffmpeg is not installed", hint=FFMPEG_HINT) from None
    if done.returncode != 0:
        raise failure(last_line(done.stderr.decode(errors="replace")))


