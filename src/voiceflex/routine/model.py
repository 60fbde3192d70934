"""The validated routine: plain dataclasses the compiler walks."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiceflex.errors import Location


@dataclass(frozen=True)
class Text:
    """A piece of text from the routine, with placeholders still in it."""

    text: str
    location: Location


@dataclass(frozen=True)
class ToneSpec:
    """How a tone sounds: a fixed pitch for `ms`, or a glide stretched over a phase."""

    freq: float
    ms: int
    freq_end: float | None = None  # set for glides (inhale/exhale)
    db: float = -14.0  # level relative to full scale; the voice sits above

    @property
    def is_glide(self) -> bool:
        return self.freq_end is not None


# Distinct pitches for distinct meanings, a chain of fourths (4:3) so that
# two played back to back (a hold's end, then the switch) read as two
# signals: done G4 < end C5 < switch F5 < start B-flat 5 < tick E-flat 6.
# No tone sits an octave over another (12 semitones): the tones carry a
# second harmonic, which would sound, and measure in `check`, as the higher
# tone.  All sit under the voice.  The tick lasts 80 ms: a hold of nothing
# but ticks must still reach -16 LUFS under the peak limit once the tones
# are raised (audio/levels), and a 40 ms tick, mostly its fades, peaked out at
# -18.1 LUFS.
DEFAULT_TONES: dict[str, ToneSpec] = {
    "start": ToneSpec(932.33, 180),
    "end": ToneSpec(523.25, 320),
    "switch": ToneSpec(698.46, 250),
    "tick": ToneSpec(1244.51, 80, db=-22.0),
    "done": ToneSpec(392.0, 700),
    "inhale": ToneSpec(330.0, 4000, freq_end=495.0, db=-22.0),
    "exhale": ToneSpec(495.0, 6000, freq_end=330.0, db=-22.0),
}
GLIDES = ("inhale", "exhale")


@dataclass(frozen=True)
class VoiceSettings:
    """Which TTS engine and voice speak the routine, and how fast."""

    engine: str = "pyttsx3"
    id: str | None = None  # None: the engine's voice for `language`
    rate: int = 160  # words per minute
    gap_ms: int = 400
    language: str = "en-us"
    # Where the voice is chosen (`voice.id`, else `language`), to point at it
    # when the engine has no such voice.
    location: Location | None = field(default=None, compare=False)
    # Which of engine, id and rate the routine file itself sets: the command
    # line and the config file fill in the rest (config.Settings.voice_for).
    given: frozenset[str] = field(default=frozenset(), compare=False)
    language_location: Location | None = field(default=None, compare=False)


BEDS = ("brown-noise", "rain", "drone")  # built-in beds (audio/bed.py), generated: no file


@dataclass(frozen=True)
class Background:
    """A sound bed under the whole routine (docs/beds.md): a built-in bed's name or an audio file's path."""

    sound: str  # one of BEDS, or an absolute path
    level: float = -20.0  # dB relative to the voice
    duck: float = 12.0  # dB the bed is lowered under speech
    duck_tones: bool = False  # lowered under tones too
    location: Location | None = field(default=None, compare=False)  # where `sound` is set

    @property
    def is_file(self) -> bool:
        return self.sound not in BEDS


@dataclass(frozen=True)
class Step:
    """Fields every step has."""

    location: Location  # where the step's kind key is
    name: str | None


@dataclass(frozen=True)
class Say(Step):
    text: Text


@dataclass(frozen=True)
class Pause(Step):
    ms: int


@dataclass(frozen=True)
class PlayTone(Step):
    tone: str


@dataclass(frozen=True)
class Cue:
    """A timed cue inside a hold: speech or a tone at `at_ms` (negative: from the end)."""

    at_ms: int
    location: Location
    say: Text | None = None
    tone: str | None = None


@dataclass(frozen=True)
class Hold(Step):
    ms: int
    start_tone: bool  # False for `rest`
    say: Text | None = None
    halfway: Text | None = None
    countdown: int | None = None
    countdown_location: Location | None = None
    cues: tuple[Cue, ...] = ()
    tick: bool = False
    countdown_voice: bool = True  # False: the countdown is ticks, not numbers


@dataclass(frozen=True)
class Sides(Step):
    sides: tuple[str, ...]
    steps: tuple[Step, ...]
    switch: Text


@dataclass(frozen=True)
class Repeat(Step):
    count: int
    steps: tuple[Step, ...]
    rest_ms: int | None = None
    rest_location: Location | None = None


@dataclass(frozen=True)
class Breathe(Step):
    in_ms: int
    hold_ms: int
    out_ms: int
    hold_out_ms: int
    cycles: int | None
    for_ms: int | None
    voice: int | None  # cycles that are spoken; None: all


@dataclass(frozen=True)
class Include(Step):
    path: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Routine:
    """A whole routine file, includes resolved."""

    title: str
    steps: tuple[Step, ...]
    file: str
    description: str | None = None
    author: str | None = None
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    tones: dict[str, ToneSpec] = field(default_factory=lambda: dict(DEFAULT_TONES))
    background: Background | None = None
    announce: bool = False  # speak "Rest, 10 seconds. Next: ..." at each rest
    # Every file read for it, the routine's own first: (real path, sha256 of
    # the bytes parsed), so a render can be keyed by exactly what it was made of.
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)
