"""Durations as routines write them ("30s", "1m30s", "01:30", 2.5) in whole milliseconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

MS_PER_HOUR = 3_600_000

_UNITS = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)\s*h)?\s*"
    r"(?:(?P<m>\d+(?:\.\d+)?)\s*m(?!s))?\s*"
    r"(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*"
    r"(?:(?P<ms>\d+(?:\.\d+)?)\s*ms)?$"
)
_CLOCK = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d{2}(?:\.\d+)?)$")
_SCALE = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}

FORMS = '30, 1.5, "30s", "750ms", "2m", "1m30s", "1h" or "01:30"'
# Far past any limit a routine has (6 hours), far below what costs time: a
# number such as 1e999990 would take seconds to turn into milliseconds, and a
# long text costs the patterns below time that grows with its length.
# Such a number comes back as BEYOND milliseconds, for the caller's range check.
_MAX_SECONDS = 10**12
BEYOND = _MAX_SECONDS * 1000 + 1
_MAX_TEXT = 64


def parse_ms(value: object, signed: bool = False) -> int:
    """Milliseconds in `value`; raises ValueError with a message fit for the user."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration such as {FORMS}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a duration must be a finite number of seconds")
        if abs(value) > _MAX_SECONDS:  # compared before any conversion: ints have no bound
            return BEYOND if value > 0 else -BEYOND
        return round(Decimal(repr(value) if isinstance(value, float) else value) * 1000)
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"`{text[:20]}…` is {len(text):,} characters, too long for a duration; "
                         f"write it like {FORMS}")
    sign = 1
    if signed and text.startswith("-"):
        sign, text = -1, text[1:].strip()
    try:
        number = Decimal(text)  # a quoted plain number: seconds
    except InvalidOperation:
        pass
    else:
        if number.is_finite():
            if number.adjusted() >= 12:  # its exponent, read without computing the value
                return sign * (BEYOND if number > 0 else -BEYOND)
            return sign * round(number * 1000)
        raise ValueError("a duration must be a finite number of seconds")
    for pattern in (_CLOCK, _UNITS):
        match = pattern.match(text)
        if match and any(match.groupdict().values()):
            parts = match.groupdict()
            if pattern is _CLOCK and int(parts["s"].split(".")[0]) >= 60:
                break
            total = sum(Decimal(v) * _SCALE[k] for k, v in parts.items() if v)
            return sign * round(total)
    raise ValueError(f"`{value}` is not a duration; write it like {FORMS}")


def format_ms(ms: int) -> str:
    """A short human form: 0:42, 12:05, 1:02:03."""
    seconds, _ = divmod(max(ms, 0), 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def duration_words(ms: int) -> str:
    """A hold's length as `{duration}` says it: "45 seconds", "2 minutes", "1 minute 30 seconds".

    Whole units from hours down; a part second is kept to the millisecond
    ("1.5 seconds", "2 minutes 0.25 seconds").  The digits stay: the voice's
    text normaliser speaks them.
    """
    hours, rest = divmod(max(ms, 0), MS_PER_HOUR)
    minutes, rest = divmod(rest, 60_000)
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in ((hours, "hour"), (minutes, "minute")) if n]
    if rest or not parts:
        seconds = f"{Decimal(rest) / 1000:f}".rstrip("0").rstrip(".") if rest % 1000 else str(rest // 1000)
        parts.append(f"{seconds} second{'' if seconds == '1' else 's'}")
    return " ".join(parts)


def format_clock(ms: int, decimals: int = 1) -> str:
    """A time in a table or message: 0:05.0, 12:05.3, and past an hour 1:07:53.7 (`decimals` of a second)."""
    # Round before splitting, so 59.96 s reads 1:00.0, not 0:60.0.
    seconds, fraction = divmod(round(max(ms, 0) / 10 ** (3 - decimals)), 10 ** decimals)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    tail = f".{fraction:0{decimals}d}" if decimals else ""
    return f"{hours}:{minutes:02d}:{seconds:02d}{tail}" if hours else f"{minutes}:{seconds:02d}{tail}"
