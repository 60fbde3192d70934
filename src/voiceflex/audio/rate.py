"""The one sample rate of voiceflex, and where a millisecond falls on it."""

from __future__ import annotations

# espeak-ng (and pyttsx3 driving it) speaks at 22050 Hz mono: every clip, tone,
# mix and file uses that rate, so nothing is ever resampled.
RATE = 22050


def ms_to_samples(ms: int | float) -> int:
    """The sample index of time `ms`: round(ms * RATE / 1000), as the plan's times map to audio."""
    return round(ms * RATE / 1000)
