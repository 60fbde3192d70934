"""Runs inside a worker process: a Piper voice model speaking one cue at a time.

Imports only the standard library until it is built, then piper and
onnxruntime, so a worker starts quickly; the parent trims and joins the audio.
"""

from __future__ import annotations

import json
import os

# One thread per worker: the pool runs one worker per core, and onnxruntime's
# own thread pool would have the two workers fight over the same cores.  Set
# before onnxruntime is imported, for the OpenMP builds that read it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


class PiperWorker:
    """Piper voices loaded once in this worker, by model path."""

    def __init__(self) -> None:
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        self._ort = onnxruntime
        self._piper_voice = PiperVoice
        self._piper_config = PiperConfig
        self._synthesis_config = SynthesisConfig
        self._loaded: dict[tuple[str, str], object] = {}

    def _voice(self, model: str, config: str) -> object:
        voice = self._loaded.get((model, config))
        if voice is None:
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
            session = self._ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
            with open(config, encoding="utf-8") as f:
                settings = self._piper_config.from_dict(json.load(f))
            voice = self._piper_voice(config=settings, session=session)
            self._loaded[(model, config)] = voice
        return voice

    def render(
        self, text: str, model: str, config: str, scales: tuple[float, float, float]
    ) -> tuple[list[bytes], int]:
        """Each sentence of `text` as 16-bit mono PCM, and the model's sample rate.

        `scales` are the model's (length, noise, noise_w) scales.
        """
        if not text.strip():
            raise ValueError("there is no text to speak")
        voice = self._voice(model, config)
        settings = self._synthesis_config(
            length_scale=scales[0],
            noise_scale=scales[1],
            noise_w_scale=scales[2],
            # Piper would scale each sentence to full range on its own: the
            # sentences of one cue would then differ in loudness.  The export's
            # levels stage sets the level of the whole track.
            normalize_audio=False,
        )
        chunks = list(voice.synthesize(text, settings))  # type: ignore[attr-defined]
        sentences = [chunk.audio_int16_bytes for chunk in chunks]
        rate = chunks[0].sample_rate if chunks else voice.config.sample_rate  # type: ignore[attr-defined]
        return sentences, rate
