"""The routine format, declared once: the loader checks against it, `voiceflex schema` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voiceflex.routine.durations import FORMS

# Value types the loader knows how to check (see `_Loader.value` in loader.py).
TEXT, STRING, DURATION, DURATION0, OFFSET, INT, NUMBER, BOOL = (
    "text", "string", "duration", "duration0", "offset", "int", "number", "bool")
STEPS, SIDES, CUES, TONE_NAME, VOICE, TONES, BREATH_VOICE, PATH, ENGINE, FREQ, BACKGROUND = (
    "steps", "sides", "cues", "tone-name", "voice", "tones", "breath-voice", "path", "engine", "freq",
    "background")

MAX_TEXT = 500
MAX_REPEAT = 1000
MAX_NESTING = 16
MAX_HOURS = 6
MAX_EVENTS = 200_000
ENGINES = ("pyttsx3", "espeak-ng", "piper")


@dataclass(frozen=True)
class Field:
    """One key of a mapping: its type, whether it must be there, bounds, and what it means."""

    type: str
    doc: str
    required: bool = False
    min: float | None = None
    max: float | None = None


TOP: dict[str, Field] = {
    "title": Field(TEXT, "Name of the routine; the MP3 title.", required=True),
    "description": Field(STRING, "What the routine is for; the MP3 comment."),
    "author": Field(STRING, "Who wrote it; the MP3 artist (default: voiceflex)."),
    "language": Field(STRING, "Language of the cues, e.g. en-us (default)."),
    "voice": Field(VOICE, "Which voice speaks, and how fast."),
    "tones": Field(TONES, "Overrides of the built-in tones, or new tones."),
    "background": Field(BACKGROUND, "A sound bed under the routine, lowered under every cue."),
    "announce": Field(BOOL, 'Say each rest and what comes next: "Rest, 10 seconds. Next: Stretch: right." '
                            "(English routines)."),
    "steps": Field(STEPS, "What happens, in order.", required=True),
}

VOICE_FIELDS: dict[str, Field] = {
    "engine": Field(ENGINE, "Speech engine: pyttsx3 (default), espeak-ng or piper."),
    "id": Field(TEXT, "Engine voice id (see `voiceflex voices`); default follows `language`."),
    "rate": Field(INT, "Words per minute.", min=80, max=400),
    "gap": Field(DURATION0, "Silence after each `say` step (default 0.4 s)."),
}

TONE_FIELDS: dict[str, Field] = {
    "freq": Field(FREQ, "Pitch in Hz; for the inhale/exhale glides a pair [start, end]."),
    "ms": Field(INT, "Length in milliseconds (glides stretch over their phase instead).", min=10, max=10_000),
    "db": Field(NUMBER, "Level in dB below full scale (default -14; the voice sits above).", min=-60, max=-3),
}

BACKGROUND_FIELDS: dict[str, Field] = {
    "sound": Field(PATH, "An audio file ffmpeg reads (relative to the routine), "
                         "or a built-in bed: brown-noise, rain, drone.", required=True),
    "level": Field(NUMBER, "Loudness in dB relative to the voice (default -20).", min=-60, max=0),
    "duck": Field(NUMBER, "dB the bed is lowered under speech (default 12).", min=0, max=60),
    "duck_tones": Field(BOOL, "Lower the bed under tones too (default false)."),
}

_HOLD_OPTIONS: dict[str, Field] = {
    "say": Field(TEXT, "Spoken when the hold begins (after the start tone)."),
    "halfway": Field(TEXT, "Spoken at the middle of the hold."),
    "countdown": Field(INT, "Speak the last N seconds: N ... 1.", min=1, max=3600),
    "countdown_voice": Field(BOOL, "false: count the `countdown` down with tick tones instead of numbers."),
    "cues": Field(CUES, "Timed cues: {at: 10s, say: ...} or {at: -5s, tone: tick}; negative `at` counts from the end."),
    "tick": Field(BOOL, "A soft tick at every whole second where nothing else sounds."),
}

# Step kinds, in the order that decides a step's kind when it has several kind-like
# keys: `hold` and `rest` may carry `say:`, and `repeat` may carry `rest:`.
STEP_KINDS: dict[str, dict[str, Field]] = {
    "hold": {"hold": Field(DURATION, "Hold for this long: start tone, cues, end tone."), **_HOLD_OPTIONS},
    "repeat": {
        "repeat": Field(INT, "Rounds.", min=1, max=MAX_REPEAT),
        "steps": Field(STEPS, "The steps of one round.", required=True),
        "rest": Field(DURATION, "Rest between rounds (not after the last)."),
    },
    "rest": {"rest": Field(DURATION, "A hold without the start tone."), **_HOLD_OPTIONS},
    "sides": {
        "sides": Field(SIDES, "Side names, e.g. [left, right]."),
        "steps": Field(STEPS, "The steps done on each side.", required=True),
        "switch": Field(TEXT, 'Spoken between sides after the switch tone (default "Switch sides.").'),
    },
    "breathe": {"breathe": Field(BREATH_VOICE, "Paced breathing.")},
    "include": {"include": Field(PATH, "Steps of another routine file, relative to this one.")},
    "pause": {"pause": Field(DURATION, "Silence.")},
    "tone": {"tone": Field(TONE_NAME, "Play a tone.")},
    "say": {"say": Field(TEXT, "Speak, then wait `voice.gap`.")},
}
NAME_FIELD = Field(TEXT, "Chapter title when the step is at the top level.")

BREATHE_FIELDS: dict[str, Field] = {
    "in": Field(DURATION, "Length of the in-breath.", required=True),
    "hold": Field(DURATION0, "Hold after breathing in (default 0)."),
    "out": Field(DURATION, "Length of the out-breath.", required=True),
    "hold_out": Field(DURATION0, "Hold after breathing out (default 0)."),
    "cycles": Field(INT, "Number of breaths.", min=1, max=MAX_REPEAT),
    "for": Field(DURATION, "Breathe for this long instead: as many whole cycles as fit."),
    "voice": Field(INT, "How many first cycles are spoken (default all; 0 = tones only).", min=0, max=MAX_REPEAT),
}

CUE_FIELDS: dict[str, Field] = {
    "at": Field(OFFSET, "When: from the start, or from the end when negative.", required=True),
    "say": Field(TEXT, "Text to speak."),
    "tone": Field(TONE_NAME, "Tone to play."),
}


# ---- JSON Schema -----------------------------------------------------------

_DURATION_SCHEMA = {
    "description": f"Seconds, or a string like {FORMS}",
    "anyOf": [
        {"type": "number"},
        {"type": "string", "pattern": r"^\s*(-\s*)?(\d+(\.\d+)?|(\d+:)?\d+:\d{2}(\.\d+)?|"
                                      r"(\d+(\.\d+)?\s*h)?\s*(\d+(\.\d+)?\s*m)?\s*(\d+(\.\d+)?\s*s)?\s*(\d+(\.\d+)?\s*ms)?)\s*$"},
    ],
}


def _type_schema(field: Field) -> dict[str, Any]:
    t = field.type
    if t == TEXT:
        out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
    elif t == STRING:
        out = {"type": "string"}
    elif t in (DURATION, DURATION0, OFFSET):
        out = dict(_DURATION_SCHEMA)
    elif t == INT:
        out = {"type": "integer"}
    elif t == NUMBER:
        out = {"type": "number"}
    elif t == BOOL:
        out = {"type": "boolean"}
    elif t == STEPS:
        out = {"$ref": "#/$defs/steps"}
    elif t == SIDES:
        out = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
    elif t == CUES:
        out = {"type": "array", "items": _object(CUE_FIELDS)}
    elif t in (TONE_NAME, PATH):
        out = {"type": "string", "minLength": 1}
    elif t == ENGINE:
        out = {"enum": list(ENGINES)}
    elif t == VOICE:
        out = _object(VOICE_FIELDS)
    elif t == TONES:
        out = {"type": "object", "additionalProperties": _object(TONE_FIELDS)}
    elif t == BACKGROUND:
        out = _object(BACKGROUND_FIELDS)
    elif t == BREATH_VOICE:
        out = _object(BREATHE_FIELDS)
    elif t == FREQ:
        out = {"anyOf": [{"type": "number"},
                         {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}]}
    else:  # pragma: no cover - a new type must be added here
        raise AssertionError(t)
    if field.min is not None:
        out["minimum"] = field.min
    if field.max is not None:
        out["maximum"] = field.max
    out["description"] = field.doc
    return out


def _object(fields: dict[str, Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: _type_schema(f) for k, f in fields.items()},
        "required": [k for k, f in fields.items() if f.required],
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a routine file, for editors."""
    steps = []
    for kind, fields in STEP_KINDS.items():
        obj = _object({**fields, "name": NAME_FIELD})
        obj["required"] = sorted({kind, *obj["required"]})
        obj["title"] = kind
        steps.append(obj)
    root = _object(TOP)
    root.update({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voiceflex routine",
        "$defs": {"steps": {"type": "array", "minItems": 1, "items": {"anyOf": steps}}},
    })
    return root
