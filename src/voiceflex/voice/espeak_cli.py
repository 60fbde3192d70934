"""The second engine: the espeak-ng command line, one process per cue, byte-deterministic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path

import numpy as np

from voiceflex.errors import EngineError, MissingComponentError
from voiceflex.voice.engine import Clip, VoiceInfo, trim_silence
from voiceflex.voice.workers import CUE_TIMEOUT, sweep_dead

PROGRAM = "espeak-ng"
SCRATCH_PREFIX = "voiceflex-espeak-"


def as_plain_text(text: str) -> str:
    """`text` as espeak-ng's command line will read it literally.

    The command line always reads `[[...]]` as phoneme codes (there is no
    option to turn that off); a zero-width space between the brackets keeps
    them ordinary text, which is how pyttsx3 treats them.  SSML is already off
    as long as -m is not given.
    """
    while "[[" in text:
        text = text.replace("[[", "[\u200b[")
    return text


class EspeakCliEngine:
    """`espeak-ng -w FILE`: the same voices as pyttsx3, each cue in its own process."""

    name = "espeak-ng"

    def __init__(self, *, timeout: float = CUE_TIMEOUT):
        program = shutil.which(PROGRAM)
        if program is None:
            raise MissingComponentError(
                "the espeak-ng program is not installed",
                hint="install espeak-ng: sudo apt-get install espeak-ng (or run scripts/setup)",
            )
        self.program = program
        self.timeout = timeout
        self._version: str | None = None
        self._voices: list[VoiceInfo] | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..."
            line = self._run("--version").strip().splitlines()[0]
            self._version = line.split("Data at:")[0].strip()
        return self._version

    def voices(self) -> list[VoiceInfo]:
        if self._voices is None:
            self._voices = _parse_voices(self._run("--voices"))
        return list(self._voices)

    def command(self, text: str, voice: str, rate: int, wav: Path) -> list[str]:
        """The argument list that speaks `text` into `wav`; it never goes through a shell."""
        return [
            self.program, "-b", "1", "-v", voice, "-s", str(rate), "-w", str(wav),
            "--", as_plain_text(text),
        ]  # fmt: skip

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]:
        texts = list(dict.fromkeys(texts))
        # Named with our pid, so that the next render removes what a killed one left.
        with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
            sweep_dead(Path(scratch).parent, SCRATCH_PREFIX)
            wavs = {text: Path(scratch) / f"{i}.wav" for i, text in enumerate(texts)}
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                pending: dict[Future[Clip], str] = {
                    pool.submit(self._render_one, text, voice, rate, wavs[text]): text
                    for text in texts
                }
                try:
                    while pending:
                        done, _ = wait_futures(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            text = pending.pop(future)
                            yield text, future.result()
                finally:
                    for future in pending:
                        future.cancel()

    def _render_one(self, text: str, voice: str, rate: int, wav: Path) -> Clip:
        # Tried twice, as the pyttsx3 workers are: a second failure names the cue.
        for attempt in (1, 2):
            try:
                return self._speak(text, voice, rate, wav)
            except EngineError as e:
                if attempt == 2:
                    raise EngineError(f'could not speak "{text}": {e}', cue=text) from None
        raise AssertionError("unreachable")

    def _speak(self, text: str, voice: str, rate: int, wav: Path) -> Clip:
        try:
            result = subprocess.run(
                self.command(text, voice, rate, wav),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(f"espeak-ng gave no answer within {self.timeout:g} s") from None
        except OSError as e:
            raise EngineError(f"cannot run espeak-ng: {e.strerror or e}") from None
        if result.returncode != 0:
            last = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise EngineError(
                f"espeak-ng exited with status {result.returncode}"
                + (f" ({last[-1]})" if last else "")
            )
        try:
            with wave.open(str(wav), "rb") as f:
                sample_rate = f.getframerate()
                frames = f.readframes(f.getnframes())
                mono16 = f.getnchannels() == 1 and f.getsampwidth() == 2
        except (OSError, EOFError, wave.Error) as e:
            raise EngineError(f"espeak-ng wrote no readable audio ({e})") from None
        if not mono16:
            raise EngineError("espeak-ng wrote something other than 16-bit mono audio")
        samples = trim_silence(np.frombuffer(frames, dtype="<i2").astype(np.int16, copy=False))
        if samples.size == 0:
            raise EngineError("espeak-ng produced no sound")
        return Clip(samples, sample_rate)

    def _run(self, *args: str) -> str:
        try:
            result = subprocess.run(
                [self.program, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise EngineError(f"espeak-ng {' '.join(args)} failed: {e}") from None
        return result.stdout.decode("utf-8", "replace")


# One voice per line after the header:
#   Pty Language  Age/Gender VoiceName          File       Other Languages
#    2  en-us     --/M       English_(America)  gmw/en-US  (en 3)
_VOICE_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\S+\s+(\S+)\s+(\S+)")


def _parse_voices(listing: str) -> list[VoiceInfo]:
    voices = []
    for line in listing.splitlines()[1:]:
        match = _VOICE_LINE.match(line)
        if match:
            language, name, file = match.groups()
            # pyttsx3 names voices by their file in lower case; so do we, so that
            # one routine's voice.id works with either engine.
            voices.append(VoiceInfo(file.lower(), name.replace("_", " "), (language,)))
    return voices
