"""The neural engine: Piper voice models run on the CPU, one worker process per core."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from importlib import metadata

import numpy as np

from voiceflex.audio.rate import RATE
from voiceflex.errors import EngineError, MissingComponentError
from voiceflex.routine.schema import VOICE_FIELDS
from voiceflex.voice.engine import Clip, VoiceInfo, trim_silence
from voiceflex.voice.espeak_cli import as_plain_text
from voiceflex.voice.piper_voices import PiperVoiceFile, find_voices, models_digest
from voiceflex.voice.workers import CUE_TIMEOUT, WorkerPool

BACKEND = "voiceflex.voice.piper_worker:PiperWorker"
_FIX = "pip install 'voiceflex[piper]' (or run scripts/setup)"

# Calibrated on the built-in routines' 67 distinct cue texts (docs/voices.md).
# pyttsx3 speaks them in 155.9 s at 160 words a minute, and about in inverse
# proportion to the rate (300.2 s at 80, 76.6 s at 320).  Piper's joe takes
# roughly 36 + 96.3 * length_scale seconds (83.7 s at 0.5, 133.0 at 1, 228.4
# at 2): the pauses and the ends of words do not stretch.  So the rate maps to
# length_scale = 1.619 * 160 / rate - 0.309, the offset set so that 160 words a
# minute give 156.6 s (1.31); 80 give 321.1 s, 400 give 71.6 s.
_STRETCH, _FIXED = 1.619, 0.309
MIN_RATE, MAX_RATE = int(VOICE_FIELDS["rate"].min), int(VOICE_FIELDS["rate"].max)  # as routine files allow

# The model's own noise is drawn inside it: with it, one text gives different
# audio every call.  Without it the output is a function of the text and the
# speed alone, and was heard as well (DESIGN.md).
NOISE_SCALE = 0.0
NOISE_W_SCALE = 0.0

# Between two sentences of one cue.  Piper speaks each sentence on its own and
# leaves only its faint padding between them, which a listener hears as a
# run-on.  espeak pauses 350-400 ms there, and Piper's own command line 200 ms
# on top of that padding (~150 ms): docs/voices.md.
SENTENCE_PAUSE_MS = 350

# Piper's padding before and after speech is faint noise (-100 dBFS and below),
# not digital zeros, and the speech fades into it.  Samples at most this big
# (-66 dBFS, some 50 dB under the speech) count as silence at either end.
QUIET = 16


def length_scale(rate: int) -> float:
    """Piper's `length_scale` for `rate` words per minute (80..400)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"a rate of {rate} words per minute is outside {MIN_RATE}..{MAX_RATE}")
    return round(_STRETCH * 160 / rate - _FIXED, 4)


def check_installed() -> None:
    """Raise MissingComponentError unless piper-tts and onnxruntime can be imported."""
    for module, package in (("piper", "piper-tts"), ("onnxruntime", "onnxruntime")):
        if importlib.util.find_spec(module) is None:
            raise MissingComponentError(f"the Python package {package} is not installed", hint=_FIX)


def join_sentences(sentences: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """One cue from its sentences: each trimmed of its padding, SENTENCE_PAUSE_MS apart, at RATE."""
    spoken = [s for s in (trim_silence(s, QUIET) for s in sentences) if s.size]
    if not spoken:
        return np.zeros(0, dtype=np.int16)
    pause = np.zeros(round(SENTENCE_PAUSE_MS * sample_rate / 1000), dtype=np.int16)
    parts = [spoken[0]]
    for sentence in spoken[1:]:
        parts += [pause, sentence]
    return resample(np.concatenate(parts), sample_rate)


def resample(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """`samples` at RATE Hz (voiceflex mixes at one rate; Piper's "low" voices speak at 16000)."""
    if sample_rate == RATE or samples.size == 0:
        return samples
    # Band-limited, by the spectrum: exact and deterministic, and cues are short.
    count = round(samples.size * RATE / sample_rate)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    out = np.fft.irfft(spectrum, count) * (count / samples.size)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class PiperEngine:
    """Piper: the bundled en_US-joe-medium voice and any the user adds (docs/voices.md)."""

    name = "piper"

    def __init__(self, *, timeout: float = CUE_TIMEOUT):
        check_installed()
        self.timeout = timeout
        self._files: dict[str, PiperVoiceFile] | None = None
        self._version: str | None = None

    def _voice_files(self) -> dict[str, PiperVoiceFile]:
        if self._files is None:
            self._files = {v.id: v for v in find_voices()}
        return self._files

    @property
    def version(self) -> str:
        if self._version is None:
            # Everything that can change the audio of one text: the code, the
            # runtime, every model file (by content) and the synthesis settings.
            self._version = (
                f"piper-tts {metadata.version('piper-tts')}, "
                f"onnxruntime {metadata.version('onnxruntime')}, "
                f"models {models_digest(list(self._voice_files().values()))}, "
                f"noise {NOISE_SCALE:g}/{NOISE_W_SCALE:g}, speed {_STRETCH:g}/{_FIXED:g}, "
                f"pause {SENTENCE_PAUSE_MS} ms, quiet {QUIET}, rate {RATE}"
            )
        return self._version

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(v.id, v.name, v.languages) for v in self._voice_files().values()]

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]:
        file = self._voice_files().get(voice)
        if file is None:
            raise EngineError(f'piper has no voice "{voice}"', hint="`voiceflex voices --engine piper` lists them")
        # Piper reads [[...]] as phoneme codes; a cue's text is only ever words.
        spoken = {as_plain_text(t): t for t in dict.fromkeys(texts)}
        workers = max(1, min(workers, len(spoken)))
        args = (str(file.model), str(file.config), (length_scale(rate), NOISE_SCALE, NOISE_W_SCALE))
        with WorkerPool(BACKEND, workers=workers, timeout=self.timeout) as pool:
            for plain, (sentences, sample_rate) in pool.render(list(spoken), *args):
                text = spoken[plain]
                pcm = [np.frombuffer(s, dtype="<i2").astype(np.int16, copy=False) for s in sentences]
                samples = join_sentences(pcm, sample_rate)
                if samples.size == 0:
                    raise EngineError(f'could not speak "{text}": piper produced no sound', cue=text)
                yield text, Clip(samples, RATE)
