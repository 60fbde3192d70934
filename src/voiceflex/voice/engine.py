"""What every TTS engine gives: rendered clips, its voices, and the Engine protocol."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voiceflex.errors import UnknownVoiceError
from voiceflex.routine.model import VoiceSettings


# eq=False: numpy arrays have no truth value, so a generated __eq__/__hash__
# would raise; compare clips with numpy.array_equal on their samples.
@dataclass(frozen=True, eq=False)
class Clip:
    """One rendered cue: mono int16 samples at `rate` Hz."""

    samples: np.ndarray
    rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("a Clip holds a 1-D int16 array")
        if self.rate <= 0:
            raise ValueError("a Clip needs a positive sample rate")

    @property
    def ms(self) -> int:
        return round(len(self.samples) * 1000 / self.rate)


@dataclass(frozen=True)
class VoiceInfo:
    """A voice an engine offers; `id` is what `voice.id` in a routine names."""

    id: str
    name: str
    languages: tuple[str, ...]

    def speaks(self, language: str) -> bool:
        """Whether this voice is for `language`: "en" takes en-us and en-gb, "en-us" also a plain "en"."""
        want = language.lower()
        return any(have == want or have.startswith(want + "-") or want.startswith(have + "-")
                   for have in (lang.lower() for lang in self.languages))


class Engine(Protocol):
    """A text-to-speech engine.

    `name` and `version` go into the voice cache key, so `version` must change
    whenever the same text could come out different.  `render` yields each of
    `texts` exactly once, as (text, clip), in any order; it raises EngineError
    naming the cue it could not speak.
    """

    name: str

    @property
    def version(self) -> str: ...

    def voices(self) -> list[VoiceInfo]: ...

    def render(
        self, texts: Sequence[str], voice: str, rate: int, *, workers: int = 1
    ) -> Iterator[tuple[str, Clip]]: ...


def resolve_voice(voices: Sequence[VoiceInfo], settings: VoiceSettings, engine_name: str) -> str:
    """The id of the voice `settings` asks for: `settings.id`, else one for `settings.language`.

    Engines such as pyttsx3 silently keep their default voice for an id they do
    not know, so an unknown id is refused here, with the closest real ones.
    """
    ids = [v.id for v in voices]
    if settings.id:
        wanted = settings.id.lower()
        for voice_id in ids:
            if voice_id.lower() == wanted:
                return voice_id
        close = difflib.get_close_matches(wanted, ids, n=3, cutoff=0.5)
        suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownVoiceError(
            f'{engine_name} has no voice "{settings.id}"{suggestion}',
            hint="`voiceflex voices` lists the voices",
        )
    language = settings.language.lower()
    # "en-us" first, then its primary language "en"; a voice matches by the
    # language it declares or by its file name (espeak's "gmw/en" declares en-gb).
    for want in dict.fromkeys([language, language.split("-")[0]]):
        for voice in voices:
            if want in (lang.lower() for lang in voice.languages):
                return voice.id
        for voice in voices:
            if voice.id.lower().rsplit("/", 1)[-1] == want:
                return voice.id
    raise UnknownVoiceError(
        f'{engine_name} has no voice for language "{settings.language}"',
        hint="choose one with voice.id; `voiceflex voices` lists the voices",
    )


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """`samples` without the exact-zero samples at either end.

    espeak pads every utterance with digital silence: about 15 ms before the
    speech and 350 ms after it (its end-of-sentence pause).  The timeline moves
    on by a clip's length plus `voice.gap`, so that padding would quietly add a
    third of a second to every gap.  Cutting exactly the zero samples is
    deterministic and never touches the speech itself.
    """
    nonzero = np.flatnonzero(samples)
    if nonzero.size == 0:
        return samples[:0]
    return samples[nonzero[0] : nonzero[-1] + 1]
