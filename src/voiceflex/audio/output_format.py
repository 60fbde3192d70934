"""Output formats: the one place formats, MP3 bitrates and loudness targets are defined and parsed.

Every command builds one frozen OutputFormat; the render, the writers and
`check` read their numbers from it.  Why the MP3 numbers are what they are
is measured in export/encoder.py's docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voiceflex.errors import UsageError

FORMATS = ("mp3", "wav")
TARGET_LUFS = -16.0  # every export measures this, integrated (README, "Export for a phone")
MAX_TRUE_PEAK_DBTP = -1.0  # ... with true peak at most this (what `check` enforces)
# A WAV is mixed this far under the limit: rounding to int16, and a finer
# oversampling than the render's meter, can each add a little peak.
WAV_PEAK_MARGIN_DB = 0.2
# MPEG-2 layer III (22.05 kHz) bitrates, kbit/s, from 32: below it LAME's
# distortion lifts speech's true peak too far for the -1 dBTP limit (measured
# on the built-in routines and a 30-minute one, mixed for -2.6 dBTP: decoded
# peaks up to -0.6 dBTP at 24k, +0.5 at 16k, +2.7 at 8k; at 32k -1.4 at most).
MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_TOO_LOW = (8, 16, 24)  # bitrates an MP3 at 22.05 kHz can have, refused above
DEFAULT_BITRATE = "64k"
LAME_LEVEL_DB = -0.45  # LAME's output decodes this much quieter than its input
PEAK_SAFETY_DB = 0.3
# (lowest bitrate, worst true-peak rise from mix to decoded file, LAME's
# level change included), highest first.  Measured: +0.3 at 64k, +0.6 at 48k,
# +1.3 at 32k, -0.3 at 96k and 128k.
_MP3_PEAK_RISE = ((96, 0.0), (64, 0.4), (48, 0.8), (0, 1.3))


@dataclass(frozen=True)
class OutputFormat:
    """A file format and the levels its file must meet, and those the render mixes at to meet them."""

    format: str  # "mp3" or "wav"
    kbps: int  # the MP3 bitrate; 0 for WAV
    target_lufs: float  # the file's integrated loudness
    max_true_peak_dbtp: float  # the file's true-peak limit
    ceiling_dbtp: float  # the render's own true-peak ceiling, below the limit by what encoding adds
    mix_lufs: float  # the loudness the render mixes at: the target, less what the encoder does to it

    @property
    def bitrate(self) -> str:
        return f"{self.kbps}k"


def output_format(fmt: str = "wav", bitrate: str | int = DEFAULT_BITRATE) -> OutputFormat:
    """The OutputFormat of `fmt` (any case) at `bitrate` (MP3 only); UsageError for either being wrong."""
    fmt = check_format(fmt)
    if fmt == "wav":
        return OutputFormat("wav", 0, TARGET_LUFS, MAX_TRUE_PEAK_DBTP,
                            MAX_TRUE_PEAK_DBTP - WAV_PEAK_MARGIN_DB, TARGET_LUFS)
    kbps = parse_bitrate(bitrate)
    rise = next(r for lowest, r in _MP3_PEAK_RISE if kbps >= lowest)
    return OutputFormat("mp3", kbps, TARGET_LUFS, MAX_TRUE_PEAK_DBTP,
                        MAX_TRUE_PEAK_DBTP - rise - PEAK_SAFETY_DB, TARGET_LUFS - LAME_LEVEL_DB)


def parse_bitrate(bitrate: str | int) -> int:
    """'64k' (or 64) as kbit/s; UsageError for anything an MP3 at 22.05 kHz cannot be."""
    text = str(bitrate).strip().lower()
    digits = text[:-1] if text.endswith("k") else text
    # ASCII digits only, and few: str.isdigit() also takes "²" and "①", which int() refuses.
    kbps = int(digits) if re.fullmatch(r"[0-9]{1,4}", digits) else None
    if kbps in MP3_BITRATES:
        return kbps
    choices = ", ".join(f"{b}k" for b in MP3_BITRATES)
    if kbps in _TOO_LOW:
        raise UsageError(f"bitrate {bitrate!r} is too low: the MP3 encoder would lift the voice's "
                         f"peaks above {MAX_TRUE_PEAK_DBTP:g} dBTP",
                         hint=f"use one of {choices} ({DEFAULT_BITRATE} is the default)")
    raise UsageError(f"bitrate {bitrate!r} is not one an MP3 at 22.05 kHz can have",
                     hint=f"use one of {choices}")


def check_format(fmt: str) -> str:
    """`fmt` in lower case, or UsageError naming the formats there are."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    return fmt


WAV = output_format("wav")  # what `play` and `check` render: the samples `export --format wav` writes
