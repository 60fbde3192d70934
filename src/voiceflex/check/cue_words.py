"""The words a cue should be heard as: its text as the engine speaks it, or Unspeakable when that cannot be known."""

from __future__ import annotations

from voiceflex.spoken import normalise, words

# Punctuation engines do not speak; anything else (/ = @ ...) they may read
# aloud in a way we cannot know, so such a cue is left unchecked.
_SILENT = set(".,;:!?\"'()[]-–—…’‘")


class Unspeakable(ValueError):
    """A cue text whose spoken words cannot be known for sure."""


def spoken_words(text: str) -> list[str]:
    """The words an engine speaks for `text`, lowercase: "Round 1 of 2." -> [round, one, of, two].

    The engine is given `spoken.normalise(text)` (numbers already words);
    raises Unspeakable for symbols or digit-letter mixes ("3x") whose reading
    is not known.
    """
    said = normalise(text)
    odd = [c for c in said if not (c.isalpha() or c.isspace() or c in _SILENT)]
    if odd:
        raise Unspeakable(f"cannot tell how {odd[0]!r} is spoken")
    return words(text)
