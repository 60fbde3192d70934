"""Audio sinks: MP3 through ffmpeg (libmp3lame) in its own process fed by a pipe, and WAV.

Facts measured on ffmpeg 5.1 / LAME 3.100 that set the MP3 settings and levels:
- LAME's output decodes 0.45 dB quieter than its input (a factor of ~0.95,
  the same at every bitrate and sample rate tried, with ffmpeg's and with
  lameenc's LAME): the mix is made that much louder, so the file measures
  -16 LUFS.
- At LAME's default quality (-q 3), its noise shaping puts quantisation
  noise under the loud speech peaks: shaped espeak speech came out of a
  64 kbit/s encode +1.0 to +1.2 dB higher in true peak.  At -q 7
  (compression_level 7, no noise shaping) the same tracks came out within
  -0.1 to +0.3 dB of their input at 64 kbit/s, with a higher SNR (median
  57.6 dB against 49.9 per 100 ms of speech) and ~1.7x faster.  So exports
  use -q 7, and each bitrate gets a ceiling below -1 dBTP by the rise
  measured at it (on decoded files, with ffmpeg's ebur128 and our meter
  agreeing within 0.1 dB) plus 0.3 dB.
- ffmpeg writes the Xing/LAME header (encoder delay and padding, so the file
  plays gapless and decodes to exactly the samples it was given) only when
  it can seek back in its output: it writes to a real file, never a pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.errors import EncoderError, MissingComponentError
from voiceflex.programs import FFMPEG_HINT, ffmpeg_path

LAME_QUALITY = 7  # see above: keeps peaks, and is fast

# How long ffmpeg may take for a track: LAME encodes ~800 times faster than
# real time here; a quarter of real time plus a minute leaves room for any
# loaded machine, and still ends an encoder that hangs.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_AUDIO_S = 0.25




class Sink:
    """Where int16 PCM goes: `write` chunks, then `close` (raises on failure) or `abort`."""

    def write(self, pcm: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Mp3Sink(Sink):
    """ffmpeg encoding s16le from its stdin into `path` (a seekable file)."""

    def __init__(self, path: Path, kbps: int, ffmpeg: str | None = None, seconds: float = 0.0):
        self.path = path
        self._fed = 0
        self._timeout = TIMEOUT_BASE_S + TIMEOUT_PER_AUDIO_S * seconds
        self._expired = False
        self._stderr = tempfile.TemporaryFile()
        command = [
            ffmpeg or ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0",
            "-map_metadata", "-1", "-c:a", "libmp3lame", "-b:a", f"{kbps}k",
            "-compression_level", str(LAME_QUALITY),
            "-id3v2_version", "0", "-write_id3v1", "0", "-f", "mp3", "-y", str(path),
        ]
        try:
            # Its own session: a Ctrl-C on the terminal reaches only voiceflex,
            # which then stops ffmpeg and removes the partial file itself.
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=self._stderr, start_new_session=True)
        except FileNotFoundError:
            self._stderr.close()
            raise MissingComponentError("ffmpeg is not installed; it encodes MP3 files",
                                        hint=FFMPEG_HINT) from None
        except OSError as e:
            self._stderr.close()
            raise EncoderError(f"could not start ffmpeg: {e.strerror or e}") from None
        _widen_pipe(self._process.stdin)
        # A hung ffmpeg would block a write, or the wait for it, for ever.
        self._watchdog = threading.Timer(self._timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self._expired = True
        self._stop()

    def _stop(self) -> None:
        """Kill ffmpeg's whole session: a wrapper script's children too."""
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass

    def write(self, pcm: np.ndarray) -> None:
        try:
            self._process.stdin.write(memoryview(np.ascontiguousarray(pcm, dtype="<i2")).cast("B"))
            self._fed += len(pcm)
        except (BrokenPipeError, ConnectionResetError):
            self._process.wait()
            raise self._failure() from None

    def close(self) -> None:
        try:
            self._process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        status = self._process.wait()
        self._watchdog.cancel()
        try:
            if status != 0 or self._expired:
                raise self._failure()
        finally:
            self._stderr.close()
        from voiceflex.export import mp3frames

        mp3frames.mend_padding(self.path, self._fed)

    def abort(self) -> None:
        self._watchdog.cancel()
        self._stop()
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._process.wait()
        self._stderr.close()

    def _failure(self) -> EncoderError:
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()]
        last = next((line for line in reversed(lines) if line), None)
        status = self._process.returncode
        if self._expired:
            return EncoderError(f"ffmpeg did not finish {self.path.name} within {self._timeout:.0f} s "
                                "and was stopped")
        if last:
            detail = last
        elif status is not None and status < 0:
            detail = f"stopped by {_signal_name(-status)}"
        else:
            detail = f"exit status {status}"
        return EncoderError(f"ffmpeg could not encode {self.path.name}: {detail}")


class WavSink(Sink):
    """16-bit mono WAV through the standard wave module."""

    def __init__(self, path: Path):
        self.path = path
        try:
            # Opened here, not by wave.open: a Wave_write whose own open failed
            # still runs its __del__, which prints a traceback.
            self._raw = open(path, "wb")
        except OSError as e:
            raise EncoderError(f"could not write {path}: {e.strerror or e}") from None
        self._file = wave.open(self._raw, "wb")
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(RATE)

    def write(self, pcm: np.ndarray) -> None:
        try:
            self._file.writeframesraw(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
        except OSError as e:
            raise EncoderError(f"could not write {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        try:
            self._file.close()  # patches the header's lengths
            self._raw.close()
        except OSError as e:
            self.abort()
            raise EncoderError(f"could not write {self.path}: {e.strerror or e}") from None

    def abort(self) -> None:
        for part in (self._file, self._raw):
            try:
                part.close()
            except (OSError, wave.Error):
                pass


# LAME takes 64 KiB, a pipe's default size, in about 2 ms: the mixer, a Python
# thread sharing the GIL with the cue shaper and the cover drawing, would
# leave ffmpeg idle at every hiccup.  A 1 MiB pipe holds ~25 ms of its work.
PIPE_BYTES = 1 << 20


def _widen_pipe(pipe) -> None:
    """Best effort: a system that refuses (pipe-max-size, not Linux) keeps its default."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError, ValueError):
        pass


def _signal_name(number: int) -> str:
    """E.g. 'SIGXFSZ (File size limit exceeded)'."""
    try:
        sig = signal.Signals(number)
        return f"{sig.name} ({signal.strsignal(sig)})"
    except ValueError:
        return f"signal {number}"


def open_sink(fmt: str, path: Path, kbps: int, samples: int = 0) -> Sink:
    """The sink writing `fmt` into `path`, for a track of `samples`."""
    return Mp3Sink(path, kbps, seconds=samples / RATE) if fmt == "mp3" else WavSink(path)


def check_written(path: Path, fmt: str, samples: int) -> None:
    """EncoderError unless `path` decodes to `samples`: an encoder that exits 0 is not trusted."""
    from voiceflex.export import mp3frames

    try:
        if fmt == "mp3":
            got = mp3frames.decoded_samples(path)
        else:
            with wave.open(str(path), "rb") as w:
                got = w.getnframes() if os.path.getsize(path) == 44 + 2 * w.getnframes() else -1
    except (mp3frames.SpliceError, wave.Error, EOFError, OSError) as e:
        raise EncoderError(f"the encoder wrote {path.name}, but not a whole {fmt.upper()} file: "
                           f"{getattr(e, 'strerror', None) or e}") from None
    if got != samples:
        raise EncoderError(f"the encoder wrote {path.name}, but it decodes to {max(got, 0)} samples "
                           f"instead of {samples}")


