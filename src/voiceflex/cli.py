"""The command line: turns arguments into library calls and errors into messages and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from voiceflex import __version__
from voiceflex.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, RoutineError, VoiceflexError

# Heavy modules (numpy, rich, the voice engines) are imported inside the
# commands that need them, so `voiceflex --help` and `validate` start fast.


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args) or EXIT_OK
    except RoutineError as exc:
        _print_diagnostics(exc, sys.stderr)
        return exc.exit_code
    except VoiceflexError as exc:
        print(f"voiceflex: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("voiceflex: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `voiceflex plan x | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug in voiceflex, not the user's doing
        if os.environ.get("VOICEFLEX_DEBUG"):
            raise
        print(f"voiceflex: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  rerun with VOICEFLEX_DEBUG=1 to see where, and please report it", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceflex",
        description="Voice-guided routines: YAML scripts become spoken, timed audio you follow hands-free.",
        epilog="A ROUTINE is a path to a .yaml file or the name of a built-in routine (see `voiceflex list`).",
    )
    parser.add_argument("--version", action="version", version=f"voiceflex {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run, command=name)
        return p

    command("list", _list, "list the built-in routines")
    p = command("validate", _validate, "check routine files and print every error")
    p.add_argument("routines", nargs="+", metavar="ROUTINE")
    p = command("plan", _plan, "show the timeline of a routine")
    p.add_argument("routine", metavar="ROUTINE")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (SPEC section 4)")
    p = command("voices", _voices, "list the voices of a speech engine")
    p.add_argument("--engine", default="pyttsx3", choices=["pyttsx3", "espeak-ng"])
    command("schema", _schema, "print the JSON Schema of routine files, for editors")
    return parser


# ---- commands ----------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from voiceflex import pipeline
    from voiceflex.routine import builtin_names
    from voiceflex.routine.durations import format_ms

    rows = []
    with _voice_progress("Preparing voice cues") as progress:
        for name in builtin_names():
            plan = pipeline.plan(name, on_voice_progress=progress)
            rows.append((name, plan.routine.title, format_ms(plan.timeline.duration_ms)))
    _table(["name", "title", "length"], rows)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from voiceflex import pipeline

    status = EXIT_OK
    for ref in args.routines:
        try:
            timeline = pipeline.validate(ref)
        except RoutineError as exc:
            _print_diagnostics(exc, sys.stdout)
            status = EXIT_BAD_INPUT
        except VoiceflexError as exc:  # e.g. no such file: report it and check the others
            print(f"voiceflex: {exc}", file=sys.stderr)
            status = max(status, exc.exit_code)
        else:
            cues = sum(e.kind == "speech" for e in timeline.events)
            print(f"{ref}: ok ({len(timeline.chapters)} chapters, {cues} spoken cues)")
    return status


def _plan(args: argparse.Namespace) -> int:
    from voiceflex import pipeline
    from voiceflex.routine.durations import format_ms

    with _voice_progress("Rendering voice cues") as progress:
        plan = pipeline.plan(args.routine, on_voice_progress=progress)
    timeline = plan.timeline
    if args.json:
        json.dump(timeline.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    rows = []
    for e in timeline.events:
        what = e.text if e.kind == "speech" else f"[{e.name}]"
        rows.append((_clock(e.start_ms), _clock(e.end_ms), str(e.chapter + 1), e.kind, what))
    print(f"{timeline.title}: {format_ms(timeline.duration_ms)}, {len(timeline.chapters)} chapters")
    _table(["#", "chapter", "start", "end"],
           [(str(i + 1), c.title, _clock(c.start_ms), _clock(c.end_ms)) for i, c in enumerate(timeline.chapters)])
    print()
    _table(["start", "end", "ch", "kind", "cue"], rows)
    return EXIT_OK


def _voices(args: argparse.Namespace) -> int:
    from voiceflex import voice

    voices = voice.list_voices(args.engine)
    _table(["id", "name", "languages"], [(v.id, v.name, ", ".join(v.languages)) for v in voices])
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from voiceflex.routine.schema import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


# ---- output helpers ------------------------------------------------------------


def _clock(ms: int) -> str:
    minutes, rest = divmod(ms, 60_000)
    return f"{minutes}:{rest / 1000:04.1f}"


def _print_diagnostics(exc: RoutineError, stream) -> None:
    caret = stream.isatty()
    for d in exc.diagnostics:
        print(str(d), file=stream)
        line = _source_line(d.location.file, d.location.line) if caret else None
        if line is not None:
            print(f"    {line}", file=stream)
            print(f"    {' ' * (d.location.column - 1)}^", file=stream)
    if len(exc.diagnostics) > 1:
        print(f"{len(exc.diagnostics)} errors", file=stream)


def _source_line(file: str, number: int) -> str | None:
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if i == number:
                    return line.rstrip("\n")
    except OSError:
        pass
    return None


def _table(headers: list[str], rows: list[tuple[str, ...]]) -> None:
    """A table: drawn with rich on a terminal, plain aligned columns otherwise."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [tuple(headers), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@contextmanager
def _voice_progress(label: str) -> Iterator:
    """A progress bar on stderr while cues are synthesized; silent when not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
