"""The command line: turns arguments into library calls and errors into messages and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys

from voiceflex import __version__
from voiceflex import cli_options as options
from voiceflex import cli_output as show
from voiceflex.errors import (
    EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, MissingComponentError, RoutineError, VoiceflexError,
)

# Heavy modules (numpy, rich, the voice engines) are imported inside the
# commands that need them, so `voiceflex --help` and `validate` start fast.


def main(argv: list[str] | None = None) -> int:
    from voiceflex import streams

    streams.prepare()
    try:
        status = _main(argv)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        status = exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return streams.finish(status)


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args) or EXIT_OK
    except RoutineError as exc:
        show.print_diagnostics(exc, sys.stderr)
        return exc.exit_code
    except MissingComponentError as exc:
        # One line: what is missing and how to install it.
        print(f"voiceflex: {exc}" + (f"; {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    except VoiceflexError as exc:
        print(f"voiceflex: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("voiceflex: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if not _stdout_gone():  # some other pipe broke: not the user's doing
            return _internal_error(exc)
        # `voiceflex plan x | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug in voiceflex, not the user's doing
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    if os.environ.get("VOICEFLEX_DEBUG"):
        raise exc
    print(f"voiceflex: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    print("  rerun with VOICEFLEX_DEBUG=1 to see where, and please report it", file=sys.stderr)
    return EXIT_FAILURE


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has left (poll says POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


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
    p.add_argument("routines", nargs="+", metavar="ROUTINE", help="a routine, or a folder: its *.yaml and *.yml files")
    p.add_argument("--no-voice", action="store_true",
                   help="check the structure only, without timing the speech (synthesizes nothing)")
    p.epilog = ("validate times every cue with its real spoken length, as plan and export do: cues not yet "
                "in the voice cache are synthesized, so overlapping speech and unknown voices are found too")
    options.voice_options(p)
    p = command("plan", _plan, "show the timeline of a routine")
    p.add_argument("routine", metavar="ROUTINE")
    options.voice_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p = command("export", _export, "render a routine to an MP3 (or WAV) file with chapters")
    p.add_argument("routine", metavar="ROUTINE", nargs="?")
    p.add_argument("-o", "--output", metavar="DIR", help="folder to write to (default: audio/, or `output` in the config)")
    p.add_argument("--format", choices=["mp3", "wav"], default="mp3")
    p.add_argument("--bitrate", type=options.short_text, help="MP3 bitrate, 32k to 160k (default: 64k, or `bitrate` in the config)")
    p.add_argument("--split", action="store_true",
                   help="one file per chapter in a folder DIR/<name>/, with an .m3u8 playlist")
    p.add_argument("--all", action="store_true", help="export every built-in routine")
    options.voice_options(p)
    _music_flag(p)
    p = command("play", _play, "play a routine live through the default sound output")
    p.add_argument("routine", metavar="ROUTINE")
    p.add_argument("--from", dest="start", metavar="CHAPTER",
                   help="start at this chapter: its number (from 1) or its title, or the start of it")
    options.voice_options(p)
    p.epilog = ("keys, when standard input is a terminal: space pauses and resumes, n or right arrow "
                "skips to the next chapter, p or left arrow goes back to the chapter's start (twice: "
                "the chapter before), q quits; Ctrl-C stops too (exit status 130)")
    _music_flag(p)
    p = command("check", _check, "listen to a routine's audio and check every cue, tone and level")
    p.add_argument("routine", metavar="ROUTINE")
    p.add_argument("--audio", metavar="FILE", help="check this file (e.g. an exported MP3) instead of a fresh render")
    p.add_argument("--json", action="store_true", help="print the report as JSON (docs/check.md)")
    p.add_argument("--strict", action="store_true",
                   help="fail when the cues' word error rate is over the documented limit (docs/check.md)")
    options.voice_options(p)
    _music_flag(p)
    p = command("serve", _serve, "serve routines to a phone on the local network: a page, a podcast feed, the MP3s")
    p.add_argument("routines", nargs="*", metavar="ROUTINE",
                   help="default: the built-in routines and the routine files in this folder")
    p.add_argument("--host", help="address to listen on (default: this machine's address on the local "
                                  "network, else 127.0.0.1; 127.0.0.1 keeps it to this machine)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    p.add_argument("--keep-token", action="store_true",
                   help="keep the secret in the address from one start to the next (in the user data folder)")
    options.voice_options(p)
    p.epilog = "Ctrl-C stops it. See docs/serve.md for what it exposes and which podcast apps can subscribe."
    p = command("voices", _voices, "list the voices of a speech engine")
    p.add_argument("--engine", type=options.engine_name, help="the engine (default: pyttsx3, or `engine` in the config)")
    p.add_argument("--language", metavar="LANG", type=options.short_text,
                   help="only voices for this language, e.g. en or en-gb; the default voice for it is marked")
    command("schema", _schema, "print the JSON Schema of routine files, for editors")
    p = command("config", _config, "show the settings a command would use, and where each comes from")
    p.add_argument("routine", metavar="ROUTINE", nargs="?", help="also take this routine's voice into account")
    options.voice_options(p)
    p.epilog = ("settings are read from the config file (VOICEFLEX_CONFIG_DIR/config.toml if that is set); "
                "the command line wins over the routine, the routine over the config file, that over the defaults")
    return parser


# ---- commands ----------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from voiceflex import pipeline
    from voiceflex.routine import builtin_names
    from voiceflex.routine.durations import format_ms

    rows = []
    settings = options.settings(args)  # the lengths the config's voice gives
    with show.voice_progress("Preparing voice cues") as progress:
        for name in builtin_names():
            plan = pipeline.plan(name, settings, on_voice_progress=progress)
            rows.append((name, plan.routine.title, format_ms(plan.timeline.duration_ms)))
    show.table(["name", "title", "length"], rows)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from voiceflex import pipeline

    settings = options.settings(args)
    status = EXIT_OK
    for ref in options.routine_files(args.routines):
        try:
            with show.voice_progress(f"Timing the cues of {ref}") as progress:
                timeline = pipeline.validate(ref, settings, speech=not args.no_voice, on_voice_progress=progress)
        except RoutineError as exc:
            show.print_diagnostics(exc, sys.stdout)
            status = EXIT_BAD_INPUT
        except VoiceflexError as exc:  # e.g. no such file: report it and check the others
            print(f"voiceflex: {exc}", file=sys.stderr)
            status = max(status, exc.exit_code)
        else:
            show.warn_all(timeline)
            cues = sum(e.kind == "speech" for e in timeline.events)
            print(f"{ref}: ok ({show.count(len(timeline.chapters), 'chapter')}, {show.count(cues, 'spoken cue')})")
    return status


def _plan(args: argparse.Namespace) -> int:
    from voiceflex import pipeline

    with show.voice_progress("Rendering voice cues") as progress:
        plan = pipeline.plan(args.routine, options.settings(args), on_voice_progress=progress)
    timeline = plan.timeline
    show.warn_all(timeline)
    if args.json:
        json.dump(timeline.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    rows = []
    for e in timeline.events:
        what = e.text if e.kind == "speech" else f"[{e.name}]"
        rows.append((show.clock(e.start_ms), show.clock(e.end_ms), str(e.chapter + 1), e.kind, what))
    print(f"{timeline.title}: {show.clock(timeline.duration_ms)}, {show.count(len(timeline.chapters), 'chapter')}")
    show.table(["#", "chapter", "start", "end"],
           [(str(i + 1), c.title, show.clock(c.start_ms), show.clock(c.end_ms)) for i, c in enumerate(timeline.chapters)])
    print()
    show.table(["start", "end", "ch", "kind", "cue"], rows)
    return EXIT_OK


def _music_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--music", metavar="FILE|BED|none",
                   help="a sound bed under the routine: an audio file, brown-noise, rain or drone; "
                        "none turns the routine's own off")


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voiceflex import pipeline
    from voiceflex.audio import output_format as formats
    from voiceflex.errors import UsageError
    from voiceflex.routine import builtin_names

    if args.all == (args.routine is not None):
        raise UsageError("give one ROUTINE, or --all for every built-in routine")
    if args.bitrate is not None and args.format == "wav":
        raise UsageError("--bitrate is for MP3 files; a WAV file has none", hint="leave out --bitrate, or use --format mp3")
    settings = options.settings(args)
    output = settings.choice("output")
    # The folder, or the nearest part of it that exists, must be a folder: a file there is the user's.
    existing = next((p for p in (Path(output.value), *Path(output.value).parents) if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        where = "-o" if output.source == "cli" else f"`output` ({settings.describe(output)})"
        raise UsageError(f"{where} names the file {existing}, not a folder",
                         hint="give the folder to write to: the file is named after the routine")
    output_format = formats.output_format(args.format, settings.bitrate)
    for ref in builtin_names() if args.all else [args.routine]:
        with show.voice_progress("Rendering voice cues") as voice_progress, \
                show.voice_progress(f"Exporting {ref}") as progress:
            path = pipeline.export(ref, settings=settings, output=output_format, split=args.split,
                                   on_voice_progress=voice_progress, on_progress=progress,
                                   on_warning=show.warn)
        print(path)
    return EXIT_OK


def _play(args: argparse.Namespace) -> int:
    import shlex

    from voiceflex import pipeline, player

    with show.voice_progress("Rendering voice cues") as progress:
        plan = pipeline.plan(args.routine, options.settings(args), on_voice_progress=progress)
    show.warn_all(plan.timeline)
    chapter = player.find_chapter(plan.timeline, args.start) if args.start is not None else 0
    # Keys only from a terminal we are in the foreground of: changing the
    # terminal's mode from a background job would stop us (SIGTTOU).
    stdin = sys.stdin
    keyed = stdin is not None and stdin.isatty() and os.tcgetpgrp(stdin.fileno()) == os.getpgrp()
    with player.play(plan, chapter=chapter, keys_fd=stdin.fileno() if keyed else None,
                     device_hint=f"to listen elsewhere: voiceflex export {shlex.quote(args.routine)}"
                     ) as (session, keys), show.play_view(plan.timeline, keys=keyed) as view:
        outcome = session.run(start_at=None, keys=keys, on_update=view)
        view(session, outcome.how)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from voiceflex import check, pipeline

    with show.voice_progress("Rendering voice cues") as progress:
        plan = pipeline.plan(args.routine, options.settings(args), on_voice_progress=progress)
    show.warn_all(plan.timeline)
    with show.voice_progress("Listening to the cues") as progress:
        report = check.check(plan, args.audio, on_progress=progress, strict=args.strict)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        show.table(["time", "kind", "cue", "verdict", "why", "wer"],
               [(show.clock(r.start_ms), r.kind, r.label if r.kind == "speech" else f"[{r.label}]", r.verdict, r.reason,
                 "" if r.details.get("wer") is None else f"{r.details['wer']:.0%}")
                for r in report.rows])
        for w in report.warnings:
            print(f"warning: {show.clock(w.start_ms)} \"{w.label}\": {w.message}")
        print()
        show.table(["measure", "value", "target", "verdict"],
               [(m.name, show.measured(m.value, m.unit), m.target, m.verdict) for m in report.measures])
        print()
        print(f"{report.audio or 'rendered'}: {report.summary()}")
    return EXIT_OK if report.passed else EXIT_FAILURE


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voiceflex import serve

    server = serve.Server.open(args.routines, host=args.host, port=args.port, keep_token=args.keep_token,
                               folder=Path.cwd(), settings=options.settings(args), on_event=_serve_event)
    names = ", ".join(e.id for e in server.entries)
    print(f"Serving {len(server.entries)} routines ({names})", flush=True)
    print(f"  page: {server.url}")
    print(f"  feed: {server.url}feed.xml")
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print("\n".join(serve.qr_lines(server.url, color=color)))
    print("Scan it with the phone's camera (same network). Ctrl-C stops.", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a server is stopped
    print("voiceflex serve: stopped", file=sys.stderr)
    return EXIT_OK


def _serve_event(kind: str, entry, outcome, seconds: float) -> None:
    """What the server tells its terminal: a finished render, a routine's problems, a failed render."""
    from voiceflex.routine.durations import format_ms

    if kind == "rendered":
        size = outcome.track.mp3.stat().st_size
        print(f"rendered {entry.id}: {format_ms(outcome.track.duration_ms)}, "
              f"{size / 1e6:.1f} MB, in {seconds:.1f} s", flush=True)
    elif kind == "problems":
        print("\n".join(outcome.problems), file=sys.stderr, flush=True)
    else:
        print(f"voiceflex: {entry.id}: {outcome.error}", file=sys.stderr, flush=True)


def _voices(args: argparse.Namespace) -> int:
    from voiceflex import voice
    from voiceflex.errors import UnknownVoiceError
    from voiceflex.routine.model import VoiceSettings

    settings = options.settings(args)
    engine = settings.choice("engine").value
    language = args.language or "en-us"
    voices = voice.list_voices(engine)
    try:  # the voice a routine in `language` with no `voice:` of its own gets
        default = voice.resolve_voice(voices, settings.voice_for(VoiceSettings(language=language)), engine)
    except UnknownVoiceError:
        default = None
    if args.language:
        voices = [v for v in voices if v.speaks(language)]
        if not voices:
            raise UnknownVoiceError(f'{engine} has no voice for language "{language}"',
                                    hint=f"`voiceflex voices --engine {engine}` lists them all")
    show.table(["id", "name", "languages", "default"],
           [(v.id, v.name, ", ".join(v.languages), f"default for {language}" if v.id == default else "")
            for v in voices])
    return EXIT_OK


def _config(args: argparse.Namespace) -> int:
    from voiceflex import config, pipeline, routine

    settings = options.settings(args)
    loaded = routine.load(args.routine) if args.routine else None
    routine_voice = loaded.voice if loaded else None
    choices = settings.voice_choices(routine_voice)
    wanted, voice_id = pipeline.chosen_voice(routine_voice, settings)  # an unknown voice fails as in `plan`
    rows = []
    for key in config.KEYS:
        chosen = choices.get(key) or settings.choice(key)
        value = "none" if chosen.value is None else str(chosen.value)
        if key == "voice":
            value = voice_id if chosen.value is not None else f"{voice_id} (for {wanted.language})"
        rows.append((key, value, settings.describe(chosen, loaded.file if loaded else None)))
    found = settings.path is not None and settings.path.is_file()
    print(f"config file: {settings.path}" + ("" if found else " (none there)"))
    show.table(["setting", "value", "from"], rows)
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from voiceflex.routine.schema import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
