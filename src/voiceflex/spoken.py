"""How a cue's text is spoken: number words, and the characters no engine can speak removed.

Every engine gets `normalise(text)` of a cue, never the author's text, so
that "30" is "thirty" in every voice and the voice cache keys on what is
spoken.  `check` compares what it hears with `words(text)`, made the same way.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories nothing can speak: controls, format characters (zero-width
# space, soft hyphen, word joiner, joiners, tag characters), private use,
# surrogates, unassigned code points, other and modifier symbols (emoji,
# dingbats, arrows: espeak-ng reads some of them by their Unicode names),
# enclosing marks (the keycap of 1️⃣).
_UNSPEAKABLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "So", "Sk", "Me"})
# Variation selectors are combining marks, but they only choose how the
# character before them is drawn (an emoji or a text glyph).
_VARIATION = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
# Symbols an engine would read differently from the next: said as words.
_SYMBOL_WORDS = {"%": " percent", "&": " and ", "°": " degrees", "+": " plus "}

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                    "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
MAX_NUMBER = 999_999_999  # larger numbers are read digit by digit

_PUNCTUATION_CATEGORIES = frozenset({"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"})


def number_words(n: int) -> str:
    """English words for 0 <= n <= MAX_NUMBER: 42 -> "forty-two", 1500 -> "one thousand five hundred"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= size:
            big, rest = divmod(n, size)
            return f"{number_words(big)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise ValueError(n)


def ordinal_words(n: int) -> str:
    """3 -> "third", 21 -> "twenty-first", 40 -> "fortieth"."""
    words = number_words(n)
    head, sep, last = words.rpartition(" ") if "-" not in words.rsplit(" ", 1)[-1] else words.rpartition("-")
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _integer(digits: str) -> str:
    n = int(digits) if len(digits) <= 10 else MAX_NUMBER + 1
    if n > MAX_NUMBER or (len(digits) > 1 and digits.startswith("0")):
        return " ".join(_ONES[int(d)] for d in digits)  # a code, or too long to say as one number
    return number_words(n)


def _clock(m: re.Match[str]) -> str:
    """A time of day as people say it ("5:30" -> "five thirty")."""
    minutes, seconds = int(m.group(1)), int(m.group(2))
    if seconds == 0:
        return f"{number_words(minutes)} o'clock"
    tail = f"oh {number_words(seconds)}" if seconds < 10 else number_words(seconds)
    return f"{number_words(minutes)} {tail}"


def unspeakable(c: str) -> bool:
    """Is `c` a character no engine can speak (it is dropped from what is spoken)?"""
    return unicodedata.category(c) in _UNSPEAKABLE_CATEGORIES or bool(_VARIATION.match(c))


def strip_unspeakable(text: str) -> tuple[str, list[str]]:
    """`text` without its unspeakable characters, and those characters (first-seen order, once each)."""
    kept, dropped = [], {}
    for c in text:
        if unspeakable(c) and c not in _SYMBOL_WORDS:
            dropped[c] = None
            # A format character joins (ZWJ) or breaks (ZWSP) inside a word: dropped
            # outright; a symbol stands for a word of its own: a space keeps words apart.
            if unicodedata.category(c) in ("So", "Sk"):
                kept.append(" ")
        else:
            kept.append(c)
    return "".join(kept), list(dropped)


def has_words(text: str) -> bool:
    """Does anything speakable remain in `text`: a letter or a digit?"""
    return any(unicodedata.category(c)[0] in "LN" for c in strip_unspeakable(text)[0])


def describe(c: str) -> str:
    """A character for a message: "U+200B ZERO WIDTH SPACE"."""
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


def normalise(text: str, language: str = "en-us") -> str:
    """What an engine is given for `text`: unspeakable characters gone, whitespace collapsed,
    and in English numbers as words.

    "Hold 30 seconds." -> "Hold thirty seconds."; "1.5" -> "one point five";
    "2nd" -> "second"; "1,000" -> "one thousand"; "5:30" -> "five thirty" ("7:05" -> "seven oh five", "12:00" -> "twelve o'clock");
    "50%" -> "fifty percent".  Numbers above a billion and ones written with a
    leading zero are read digit by digit.  Other languages keep their digits
    (their engine voice knows how they are said).  "" when nothing speakable
    is left.
    """
    text = unicodedata.normalize("NFC", strip_unspeakable(text)[0])
    if not has_words(text):
        return ""
    english = language.lower().startswith("en")
    for symbol, word in _SYMBOL_WORDS.items():
        if symbol in text and (english or symbol != "&"):
            text = text.replace(symbol, word if english else f" {symbol} ")
    if english:
        text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000
        text = re.sub(r"\b(\d{1,2}):([0-5]\d)\b", _clock, text)
        text = re.sub(r"\b(\d+)\.(\d+)\b",
                      lambda m: f"{_integer(m.group(1))} point " + " ".join(_ONES[int(d)] for d in m.group(2)), text)
        text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_words(int(m.group(1))) if len(m.group(1)) < 10
                      else _integer(m.group(1)) + m.group(2), text, flags=re.I)
        text = re.sub(r"\d+", lambda m: f" {_integer(m.group())} ", text)
        text = re.sub(r" +([.,;:!?)])", r"\1", text)
    return " ".join(text.split())


def words(text: str, language: str = "en-us") -> list[str]:
    """The words of `text` as spoken, for comparing with what a recogniser heard:
    lower case, numbers as words, no punctuation ("Round 2 of 3." -> [round, two, of, three]).
    """
    spoken = unicodedata.normalize("NFKD", normalise(text, language).lower())
    spoken = "".join(c for c in spoken if not unicodedata.combining(c)).replace("\u2019", "'")
    out = []
    for c in spoken:
        cat = unicodedata.category(c)
        if c == "'" or cat[0] in "LN":
            out.append(c)
        elif cat in _PUNCTUATION_CATEGORIES or c.isspace() or cat[0] == "S":
            out.append(" ")
    return [w.strip("'") for w in "".join(out).split() if w.strip("'")]
