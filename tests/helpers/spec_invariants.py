"""Invariants of a plan's JSON (`voiceflex plan --json`), shared by the golden and the real-engine tests."""

from __future__ import annotations


def check_plan(plan: dict) -> None:
    """Assert what SPEC 4 promises of any plan; raises AssertionError naming the broken rule."""
    duration, chapters, events = plan["duration_ms"], plan["chapters"], plan["events"]
    assert isinstance(plan["title"], str) and plan["title"]
    assert chapters, "at least one chapter"
    assert chapters[0]["start_ms"] == 0, "chapters start at 0"
    assert chapters[-1]["end_ms"] == duration, "chapters end at duration_ms"
    for a, b in zip(chapters, chapters[1:]):
        assert a["end_ms"] == b["start_ms"], f"gap or overlap between chapters {a} and {b}"
    assert all(c["start_ms"] <= c["end_ms"] for c in chapters)
    starts = [e["start_ms"] for e in events]
    assert starts == sorted(starts), "events sorted by start_ms"
    for e in events:
        assert 0 <= e["start_ms"] <= e["end_ms"] <= duration, e
        ch = chapters[e["chapter"]]
        assert ch["start_ms"] <= e["start_ms"] and (e["start_ms"] < ch["end_ms"] or ch["end_ms"] == duration), e
        assert e["source"].rsplit(":", 2)[1].isdigit(), e
        if e["kind"] == "speech":
            assert e["text"].strip(), e
        else:
            assert e["kind"] == "tone" and e["name"], e
            freq = e["freq_hz"]
            assert (isinstance(freq, list) and len(freq) == 2) if e["name"] in ("inhale", "exhale") else \
                isinstance(freq, (int, float)), e
    speech = [e for e in events if e["kind"] == "speech"]
    for a, b in zip(speech, speech[1:]):
        assert a["end_ms"] <= b["start_ms"], f"speech overlaps: {a} / {b}"
