"""`voiceflex check`: listen to a routine's audio and check every cue, tone and level against its plan."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from voiceflex.audio.rate import RATE, ms_to_samples
from voiceflex.check import cue_verdicts, decoding, intelligibility, loudness_checks, tone_checks
from voiceflex.check.recogniser import Recogniser
from voiceflex.check.report import FAIL, PASS, UNCHECKED, Report, Row, SlotWarning
from voiceflex.planned import Plan, render
from voiceflex.spoken import words

__all__ = ["Report", "Row", "SlotWarning", "check"]

Progress = Callable[[int, int], None]


def check(plan: Plan, audio: str | Path | None = None, *, on_progress: Progress | None = None,
          strict: bool = False, transcribe: bool = True) -> Report:
    """Check `plan`'s audio: the file `audio` (any format ffmpeg reads), or else its render.

    Every speech event is decoded in its planned window and must be heard as
    its own cue, on time; every tone must sound at its planned start (glides
    rising or falling as planned); the track must measure -16 +- 1 LUFS with
    true peak <= -1 dBTP and no clipped samples; a file must also start where
    the plan does and last as long.  Every cue is also transcribed freely
    (Whisper tiny.en) for its word error rate: a cue a listener is likely to
    mishear is a warning, and so is a high rate for the routine, which fails
    it only when `strict` (`transcribe=False` leaves that out: timing and
    levels only, in half the time).  `on_progress(done, total)` counts speech cues as
    they are decoded and then transcribed.  Raises MissingComponentError
    without pocketsphinx, faster-whisper or ffmpeg, UsageError for an
    unreadable `audio`.
    """
    began = time.monotonic()
    timeline = plan.timeline
    english = plan.routine.voice.language.lower().startswith("en")
    recogniser = Recogniser(_lengths(plan)) if english else None  # fails early without pocketsphinx
    listener = intelligibility.Listener() if english and transcribe else None  # and without faster-whisper
    with tempfile.TemporaryDirectory(prefix="voiceflex-check-") as tmp:
        # The track goes to a file and is mapped, not held: a routine may run for hours.
        raw = Path(tmp) / "track.s16"
        if audio is None:
            decoding.write_raw(render(plan), raw)
            meter = decoding.LoudnessMeter(raw, raw=True)
        else:
            audio = Path(audio)
            decoding.decode(audio, raw)
            meter = decoding.LoudnessMeter(audio, raw=False)  # the file as it is, at its own rate
        try:
            cues, transcripts, tone_results, clipped, measures = _listen(
                plan, raw, audio is not None, recogniser, listener, on_progress)
            loudness = meter.result()
        except BaseException:
            meter.cancel()
            raise
    measures = loudness_checks.loudness_measures(loudness.integrated_lufs, loudness.true_peak_dbtp, clipped) + measures
    rows, warnings = _rows(timeline.events, cues, transcripts, tone_results)
    measures.append(intelligibility.routine_measure(transcripts, strict=strict))
    warnings += intelligibility.warnings(timeline.events, transcripts, plan.routine.voice.rate)
    warnings.sort(key=lambda w: w.start_ms)
    return Report(timeline.title, None if audio is None else str(audio), tuple(rows), tuple(measures),
                  tuple(warnings), time.monotonic() - began)


def _listen(plan: Plan, raw: Path, is_file: bool, recogniser: Recogniser | None,
            listener: intelligibility.Listener | None, on_progress: Progress | None):
    """Cue verdicts and transcripts, tone verdicts, clipped samples, and (for a file) its alignment."""
    timeline = plan.timeline
    pcm = decoding.load(raw)
    measures = []
    offset = 0
    if is_file:
        with closing(render(plan)) as reference:  # only its first minutes are used
            a = decoding.align(pcm, reference, ms_to_samples(timeline.duration_ms))
        measures = loudness_checks.alignment_measures(a.offset_ms, len(pcm) * 1000 / RATE, timeline.duration_ms)
        offset = a.offset_samples or 0
    clipped = loudness_checks.clipped_samples(pcm)
    heard16k = None  # what a listener hears, bed and all, for the word error rate
    if plan.bed is not None and listener is not None:
        decoding.resample_16k(raw, raw.with_name("heard16k.s16"))
        heard16k = decoding.load(raw.with_name("heard16k.s16"))
    if plan.bed is not None:
        # The bed is known to the sample: cues and tones are listened for
        # with it taken out (exactly from a render; from a file, all but
        # what its encoder changed).
        dry = raw.with_name("dry.s16")
        decoding.write_raw(_without_bed(plan, pcm, offset), dry)
        raw, pcm = dry, decoding.load(dry)
    raw16 = raw.with_name("track16k.s16")
    decoding.resample_16k(raw, raw16)
    pcm16k = decoding.load(raw16)
    n = sum(e.kind == "speech" for e in timeline.events)
    transcripts = [None] * n
    if recogniser is not None:
        # One progress count over both passes: decoding, then transcribing.
        passes = 1 if listener is None else 2
        first = None if on_progress is None else (lambda done, total: on_progress(done, passes * total))
        second = None if on_progress is None else (lambda done, total: on_progress(total + done, 2 * total))
        cues = cue_verdicts.check_cues(timeline.events, pcm16k, recogniser, on_progress=first)
        if listener is not None:
            transcripts = intelligibility.transcribe_cues(timeline.events, pcm16k if heard16k is None else heard16k,
                                                          listener, on_progress=second)
    else:
        cues = [cue_verdicts.CueResult(UNCHECKED, "the recogniser only knows English")] * n
    return cues, transcripts, tone_checks.check_tones(timeline.events, pcm), clipped, measures


def _without_bed(plan: Plan, pcm, offset: int):
    """`pcm` less the plan's sound bed (placed `offset` samples late), as int16 chunks."""
    import numpy as np

    from voiceflex.audio.mixer import CHUNK_SAMPLES

    levelled = plan.track()
    try:
        for a in range(0, len(pcm), CHUNK_SAMPLES):
            b = min(a + CHUNK_SAMPLES, len(pcm))
            dry = pcm[a:b].astype(np.float32) - np.rint(levelled.bed(a - offset, b - offset) * 32768.0)
            yield np.clip(dry, -32768, 32767).astype("<i2")
    finally:
        levelled.close()


def _lengths(plan: Plan) -> dict[str, int]:
    """Each distinct cue text and how long it is spoken (ms)."""
    return {e.text or "": e.end_ms - e.start_ms for e in plan.timeline.events if e.kind == "speech"}


def _rows(events, cues: list[cue_verdicts.CueResult], transcripts: list, tone_results: list[tone_checks.ToneResult]):
    """One row per event, in plan order; slot problems join their speech row or the warnings."""
    slots = loudness_checks.slot_problems(events)
    cue_iter, heard_iter, tone_iter = iter(cues), iter(transcripts), iter(tone_results)
    rows, warnings = [], []
    for i, e in enumerate(events):
        if e.kind == "speech":
            c, t = next(cue_iter), next(heard_iter)
            verdict, reason = c.verdict, c.reason
            if c.look_alike and t is not None and c.onset_ms is not None and words(t.heard) != c.heard.split():
                # The grammar chose another cue that sounds alike, on time and as
                # long as this one; the free recogniser did not hear that cue
                # there.  So this cue's speech is in its slot: the timing holds,
                # and how well it is understood is the word error rate's business.
                verdict = PASS
                reason = (f"{cue_verdicts.recognised(c.onset_ms - e.start_ms)}; the grammar took it for "
                          f"\"{c.heard}\", Whisper heard \"{t.heard}\"")
            slot = slots.get(i)
            if slot is not None and slot[0] == FAIL:
                verdict, reason = FAIL, f"{reason}; {slot[1]}"
            elif slot is not None:
                warnings.append(SlotWarning(e.start_ms, e.text or "", slot[1]))
            details = {"heard": c.heard, "heard_at_ms": c.onset_ms,
                       "transcript": None if t is None else t.heard,
                       "wer": None if t is None else round(t.wer, 3)}
            rows.append(Row("speech", e.start_ms, e.end_ms, e.text or "", verdict, reason, str(e.source), details))
        else:
            t = next(tone_iter)
            freq = list(e.freq_hz) if isinstance(e.freq_hz, tuple) else e.freq_hz
            details = {"freq_hz": freq, "level_dbfs": _round(t.level_db), "contrast_db": _round(t.contrast_db),
                       "measured_hz": list(t.measured_hz) if t.measured_hz else None}
            rows.append(Row("tone", e.start_ms, e.end_ms, e.name or "", t.verdict, t.reason, str(e.source), details))
    return rows, warnings


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
