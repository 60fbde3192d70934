"""Sound: tones, the streaming mixer, loudness and the level plan of an export.

Everything runs at one rate, RATE (22050 Hz mono): float32 while mixing,
int16 to the sinks.
"""

from voiceflex.audio.mixer import CHUNK_SAMPLES, render, to_pcm16, total_samples
from voiceflex.audio.rate import RATE, ms_to_samples

__all__ = ["CHUNK_SAMPLES", "RATE", "ms_to_samples", "render", "to_pcm16", "total_samples"]
