"""What `voiceflex check` found: a verdict per cue and tone, the measured levels, and the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voiceflex.check.loudness_checks import Measure

PASS, FAIL, UNCHECKED, WARNING = "pass", "FAIL", "unchecked", "warning"


@dataclass(frozen=True)
class Row:
    """One cue or tone of the plan, with its verdict ("pass", "FAIL" or "unchecked") and why."""

    kind: str  # "speech" or "tone"
    start_ms: int
    end_ms: int
    label: str  # the cue's text, or the tone's name
    verdict: str
    reason: str
    source: str  # FILE:LINE:COL of the step that made it
    details: dict[str, Any] = field(default_factory=dict)  # what was heard or measured

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "start_ms": self.start_ms, "end_ms": self.end_ms}
        data["text" if self.kind == "speech" else "name"] = self.label
        data.update(verdict=self.verdict, reason=self.reason, source=self.source)
        data.update(self.details)
        return data


@dataclass(frozen=True)
class SlotWarning:
    """Something a listener may notice that is not a failure (a cue crowding the next)."""

    start_ms: int
    label: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "text": self.label, "message": self.message}


@dataclass(frozen=True)
class Report:
    """Everything `check` found; `passed` is what the exit status says."""

    title: str
    audio: str | None  # the file checked, None when the routine was rendered
    rows: tuple[Row, ...]
    measures: tuple[Measure, ...]  # levels, and for a file its alignment with the plan
    warnings: tuple[SlotWarning, ...]
    seconds: float  # how long the check took

    @property
    def passed(self) -> bool:
        return all(r.verdict != FAIL for r in self.rows) and all(m.verdict != FAIL for m in self.measures)

    def counts(self, kind: str) -> dict[str, int]:
        rows = [r for r in self.rows if r.kind == kind]
        return {"total": len(rows), "passed": sum(r.verdict == PASS for r in rows),
                "failed": sum(r.verdict == FAIL for r in rows),
                "unchecked": sum(r.verdict == UNCHECKED for r in rows)}

    def measure(self, name: str) -> Measure | None:
        return next((m for m in self.measures if m.name == name), None)

    def summary(self) -> str:
        """One line, e.g. "142/145 speech cues recognised, 3 unchecked; 60/60 tones;
        -16.1 LUFS, -1.6 dBTP, word error rate 8.2 %: PASS"."""
        speech, tones = self.counts("speech"), self.counts("tone")
        parts = [f"{speech['passed']}/{speech['total']} speech cues recognised"
                 + (f", {speech['unchecked']} unchecked" if speech["unchecked"] else ""),
                 f"{tones['passed']}/{tones['total']} tones"
                 + (f", {tones['unchecked']} unchecked" if tones["unchecked"] else "")]
        levels = []
        lufs, peak, clipped = (self.measure(n) for n in ("integrated loudness", "true peak", "clipped samples"))
        if lufs is not None:
            levels.append(f"{lufs.value:.1f} LUFS")
        if peak is not None:
            levels.append(f"{peak.value:.1f} dBTP")
        if clipped is not None and clipped.value:
            levels.append(f"{clipped.value} clipped samples")
        wer = self.measure("word error rate")
        if wer is not None and wer.value is not None:
            levels.append(f"word error rate {wer.value:.1f} %")
        offset = self.measure("start offset")
        if offset is not None:
            levels.append("no match with the plan" if offset.value is None else f"offset {offset.value:+g} ms")
        if levels:
            parts.append(", ".join(levels))
        return "; ".join(parts) + (": PASS" if self.passed else ": FAIL")

    def to_json(self) -> dict[str, Any]:
        """The report for machines; docs/check.md describes every field."""
        return {
            "title": self.title,
            "audio": self.audio,
            "passed": self.passed,
            "summary": self.summary(),
            "speech": self.counts("speech"),
            "tones": self.counts("tone"),
            "measures": [{"name": m.name, "value": m.value, "unit": m.unit, "verdict": m.verdict,
                          "target": m.target} for m in self.measures],
            "events": [r.to_json() for r in self.rows],
            "warnings": [w.to_json() for w in self.warnings],
            "seconds": round(self.seconds, 2),
        }
