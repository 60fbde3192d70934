"""Benchmarks of export, playback start and start-up against their goals (issue 5); run by scripts/bench."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
VOICEFLEX = str(VENV_BIN / "voiceflex")
PYTHON = str(VENV_BIN / "python")
sys.path.insert(0, str(ROOT / "tests"))  # tests/helpers/alsa.py: the ALSA capture of `play`

BUILTIN = "hip-flexor-stretch"
BITRATE = "64k"


# ---- the routines ------------------------------------------------------------------------
# A guided mobility class as a coach would script it: a cue every few seconds,
# holds with countdowns and cues, both sides, rounds, breathing, ticking holds.
# Exercise names, sides, rounds and hold lengths go into the texts, so the
# 30-minute routine has a few hundred distinct cues to synthesize.

EXERCISES = [
    ("hip flexor stretch", "Kneel on your {side} knee, the other foot forward."),
    ("hamstring stretch", "Lie on your back and lift your {side} leg."),
    ("pigeon pose", "Bring your {side} shin forward, across the mat."),
    ("figure four stretch", "Cross your {side} ankle over the other knee."),
    ("quad stretch", "Lie on your side and hold your {side} ankle."),
    ("calf stretch", "Step your {side} foot back, heel down."),
    ("side bend", "Reach your {side} arm up and over."),
    ("seated twist", "Sit tall and turn towards your {side} side."),
    ("thread the needle", "Slide your {side} arm under your chest."),
    ("low lunge", "Step your {side} foot forward into a lunge."),
    ("butterfly stretch", "Let your {side} knee sink towards the floor."),
    ("chest opener", "Place your {side} hand on the wall behind you."),
    ("shoulder stretch", "Pull your {side} arm across your chest."),
    ("neck release", "Tilt your head towards your {side} shoulder."),
    ("glute bridge", "Press through your {side} heel and lift your hips."),
    ("cat and cow", "Round your back, then let your belly sink."),
    ("child's pose", "Sit back on your heels and reach forward."),
    ("frog stretch", "Widen your knees and lower your hips back."),
    ("adductor rock", "Rock slowly back towards your {side} heel."),
    ("ankle circles", "Draw slow circles with your {side} ankle."),
    ("wrist stretch", "Turn your {side} palm up and ease the fingers back."),
    ("spinal roll", "Roll down one vertebra at a time."),
    ("hip circles", "Make slow circles with your {side} knee."),
    ("doorway stretch", "Rest your {side} forearm on the door frame."),
]
TIPS = [
    "Keep your breathing slow and even.", "Relax your jaw and shoulders.",
    "Stay tall through your spine.", "No bouncing, just a steady stretch.",
    "Ease off if anything feels sharp.", "Let gravity do the work.",
    "Soften your belly as you breathe out.", "Keep your hips square.",
]
ORDINALS = ["", "", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


def _block(index: int, rng: random.Random) -> list[str]:
    """The YAML lines of exercise block `index`: one or two chapters."""
    name, setup = EXERCISES[index % len(EXERCISES)]
    lap = index // len(EXERCISES) + 1
    title = name.capitalize() + (f" {lap}" if lap > 1 else "")
    # Later laps of a long routine say which lap it is, so its distinct cues grow with it.
    again = f", for the {ORDINALS[min(lap, len(ORDINALS) - 1)]} time" if lap > 1 else ""
    tip1, tip2, tip3 = rng.sample(TIPS, 3)
    secs = rng.choice([36, 40, 44, 48])
    kind = (0, 1, 0, 2, 1, 3)[index % 6]
    if kind == 0:  # both sides: holds with cues and a countdown
        return [
            f"  - name: {title}", f'    say: "Next, the {name}{again}. {tip1}"',
            f"  - name: {title} sides", "    sides: [left, right]",
            f'    switch: "Now the {{side}} side of the {name}."', "    steps:",
            f'      - say: "{setup}"',
            f'      - say: "Settle into the {name} on the {{side}} side."',
            f'      - say: "Breathe in, and ease into the {name}."',
            f"      - hold: {secs}s",
            f'        say: "Hold the {name} for {{seconds}} seconds."',
            f'        halfway: "Halfway on the {{side}} side. {tip2}"',
            "        countdown: 5",
            "        cues:",
            f'          - {{at: 8s, say: "{tip3}"}}',
            f'          - {{at: 12s, say: "Feel the {name} on the {{side}} side."}}',
            f'          - {{at: -11s, say: "A few more breaths, {name}, {{side}} side."}}',
            f'      - say: "Slowly release the {name} on the {{side}} side."',
        ]
    if kind == 1:  # rounds with rests
        hold = secs - 12
        return [
            f"  - name: {title}", f'    say: "Rounds of the {name}{again}. {tip1}"',
            f'  - say: "{setup.format(side="right")}"',
            f"  - name: {title} rounds", f"    repeat: {rng.choice([3, 4, 5])}", "    rest: 8s",
            "    steps:",
            f'      - say: "Round {{round}} of {{rounds}} of the {name}."',
            f"      - hold: {hold}s",
            '        say: "Hold for {seconds} seconds, round {round}."',
            f'        halfway: "Halfway, round {{round}} of the {name}."',
            "        countdown: 3",
            "        cues:",
            f'          - {{at: 6s, say: "{tip2}"}}',
            f'          - {{at: -8s, say: "Round {{round}}, stay with the {name}."}}',
            "          - {at: -5s, tone: tick}",
            f'      - say: "Good. That was round {{round}} of the {name}."',
        ]
    if kind == 2:  # paced breathing
        breath_in, hold, out = rng.choice([(4, 2, 6), (4, 4, 4), (5, 0, 7), (3, 1, 5)])
        return [
            f"  - name: {title} breathing",
            f'    say: "Settle into the {name}{again} and breathe with the tones."',
            f'  - say: "In for {breath_in}, hold for {hold}, out for {out}."',
            f"  - breathe: {{in: {breath_in}s, hold: {hold}s, out: {out}s, "
            f"cycles: {rng.choice([4, 5, 6])}, voice: 2}}",
            f'  - say: "Let your breath return to normal. {tip2}"',
        ]
    return [  # a ticking hold
        f"  - name: {title}", f'    say: "Time for the {name}{again}."',
        f'  - say: "{setup.format(side="left")}"',
        f"  - hold: {secs - 10}s",
        f'    say: "Stay with the {name} for {{seconds}} seconds."',
        "    tick: true", "    countdown: 3",
        "    cues:",
        f'      - {{at: 5s, say: "The {name}, {secs - 10} seconds."}}',
        f'  - say: "{tip1}"', "  - pause: 2s",
    ]


def routine_yaml(minutes: int, blocks: int, rest_ms: int = 10_000, engine: str = "pyttsx3") -> str:
    rng = random.Random(minutes)
    lines = [f"title: Benchmark class, {minutes} minutes", f"voice: {{engine: {engine}}}",
             "description: A generated mobility class for scripts/bench.",
             "author: voiceflex bench", "steps:",
             "  - name: Welcome", f'    say: "Welcome to this {minutes} minute class."',
             '  - say: "Find a quiet space with room to lie down."', "  - pause: 2s"]
    for i in range(blocks):
        lines += _block(i, rng)
    # The last hold's length brings the class to exactly its length.
    lines += ["  - name: Finish", '    say: "Lie down and rest for a moment."',
              f"  - rest: {rest_ms}ms", '    halfway: "Let your whole body be heavy."',
              "    countdown: 3",
              '  - say: "That is the end of the class. Well done."', "  - tone: done"]
    return "\n".join(lines) + "\n"


def make_routine(folder: Path, minutes: int, engine: str = "pyttsx3") -> tuple[Path, dict]:
    """A class of exactly `minutes` spoken by `engine` (real speech lengths, from the bench's voice cache)."""
    from voiceflex import pipeline

    path = folder / (f"class-{minutes}min.yaml" if engine == "pyttsx3" else f"class-{minutes}min-{engine}.yaml")
    target = minutes * 60_000

    def length(blocks: int, rest_ms: int = 10_000) -> int:
        path.write_text(routine_yaml(minutes, blocks, rest_ms, engine), encoding="utf-8")
        return pipeline.plan(str(path)).timeline.duration_ms

    blocks = max(1, minutes // 2)
    while blocks > 1 and length(blocks) > target:
        blocks -= 1
    while length(blocks + 1) <= target:
        blocks += 1
    rest_ms = 10_000 + target - length(blocks)
    plan = pipeline.plan(str(path)) if length(blocks, rest_ms) else None
    timeline = plan.timeline
    speech = [e for e in timeline.events if e.kind == "speech"]
    info = {"minutes": minutes, "duration_ms": timeline.duration_ms,
            "chapters": len(timeline.chapters), "events": len(timeline.events),
            "speech": len(speech), "distinct": len({e.text for e in speech}),
            "spoken_s": sum(e.end_ms - e.start_ms for e in speech) / 1000}
    if timeline.duration_ms != target:
        raise RuntimeError(f"the {minutes}-minute routine came out {timeline.duration_ms} ms long")
    return path, info


# ---- the pydub baseline ----------------------------------------------------------------------
# What a user would write without voiceflex: one AudioSegment for the whole
# track, each cue and tone overlaid onto it in turn, then exported.  It gets
# the very clips voiceflex speaks and the very tones it plays, as WAV files.

PYDUB_BASELINE = r'''
import json, sys
from pydub import AudioSegment

folder = sys.argv[1]
with open(f"{folder}/events.json") as f:
    plan = json.load(f)
track = AudioSegment.silent(duration=plan["duration_ms"], frame_rate=22050)
sounds = {}
for event in plan["events"]:
    name = event["file"]
    if name not in sounds:
        sounds[name] = AudioSegment.from_wav(f"{folder}/{name}")
    track = track.overlay(sounds[name], position=event["start_ms"])
track.export(sys.argv[2], format="mp3", bitrate="64k")
'''


def prepare_pydub(folder: Path, routine: Path) -> Path:
    """events.json and one WAV per clip and per tone length, for the baseline."""
    import numpy as np

    from voiceflex import pipeline
    from voiceflex.audio.rate import RATE, ms_to_samples
    from voiceflex.audio.tones import synth

    plan = pipeline.plan(str(routine))
    folder.mkdir()
    files: dict[tuple, str] = {}

    def wav(key: tuple, samples: np.ndarray) -> str:
        if key not in files:
            files[key] = f"{len(files)}.wav"
            with wave.open(str(folder / files[key]), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(samples.astype("<i2").tobytes())
        return files[key]

    events = []
    for e in plan.timeline.events:
        if e.kind == "speech":
            name = wav(("speech", e.text), plan.clips[e.text].samples)
        else:
            n = ms_to_samples(e.end_ms) - ms_to_samples(e.start_ms)
            tone = np.rint(synth(plan.routine.tones[e.name], n) * 32767.0)
            name = wav(("tone", e.name, n), tone)
        events.append({"start_ms": e.start_ms, "file": name})
    (folder / "events.json").write_text(json.dumps(
        {"duration_ms": plan.timeline.duration_ms, "events": events}))
    script = folder / "baseline.py"
    script.write_text(PYDUB_BASELINE)
    return script


# ---- measuring -----------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    load: float


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    def median(self, what: str = "seconds") -> float:
        return statistics.median(getattr(r, what) for r in self.runs)


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Wall time of a whole process, and its peak RSS as wait4 gives it.

    Linux's wait4 reports the larger of the process's own peak and that of
    the largest child it waited for (ffmpeg, voice workers): the biggest
    single process of the tree, not a sum.
    """
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                               f"{err.read().decode(errors='replace').strip()}")
    return Run(seconds, usage.ru_maxrss / 1024, load)


HANGS: list[str] = []  # `play` runs that did not stop after SIGINT (with their thread dumps)


def first_sound(routine: str, cache: Path, folder: Path) -> Run:
    """Seconds from starting `voiceflex play` to its first samples reaching the (captured) device.

    As tests/helpers/alsa.py's time_to_first_sound: a "device" capture whose reader
    is up before the clock starts; the player is stopped with SIGINT once the
    first samples came.  A player that does not stop is dumped (faulthandler)
    and killed, and reported under the table.
    """
    from helpers.alsa import make_capture

    load = os.getloadavg()[0]
    if folder.exists():
        shutil.rmtree(folder)
    capture = make_capture(folder, "device")
    try:
        env = capture.env(VOICEFLEX_CACHE_DIR=str(cache), PYTHONFAULTHANDLER="1")
        began = time.time()
        proc = subprocess.Popen([VOICEFLEX, "play", routine], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while capture.first_sound() is None:
            if proc.poll() is not None:
                raise RuntimeError(f"play {routine} ended before any sound: "
                                   f"{proc.stderr.read().decode().strip()}")
            time.sleep(0.001)
        seconds = capture.first_sound() - began
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = proc.communicate()
            HANGS.append(f"play {routine}: still running 30 s after SIGINT\n{err.decode()[-4000:]}")
        return Run(seconds, 0.0, load)
    finally:
        capture.close()


# Python's own peak and its children's, from inside the process (for the note under the table).
RSS_PROBE = r'''
import resource, sys
from voiceflex.cli import main
status = main(sys.argv[2:])
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as f:
    f.write(f"{me} {kids}")
sys.exit(status)
'''


def rss_split(args: list[str], env: dict[str, str], folder: Path) -> tuple[float, float]:
    """(voiceflex's own peak RSS, its largest child's), MB."""
    out = folder / "rss.txt"
    subprocess.run([PYTHON, "-c", RSS_PROBE, str(out), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    me, kids = out.read_text().split()
    return int(me) / 1024, int(kids) / 1024


# ---- sound beds (issue 15) ----------------------------------------------------------------

MUSIC_SECONDS = 300
GENERATED_BED = "rain"


def make_music(folder: Path, seconds: int = MUSIC_SECONDS) -> Path:
    """A stereo 44.1 kHz MP3 to put under the routines: a chord over pink noise, `seconds` long."""
    path = folder / "music.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=277.2:duration={seconds}",
                    "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.1:seed=3:duration={seconds}",
                    "-filter_complex", "amix=inputs=3", "-ac", "2", "-ar", "44100", "-b:a", "128k",
                    str(path)], check=True)
    return path


def bed_runs(r30: Path, r120: Path, music: Path) -> list[tuple[str, Path, str]]:
    """(series key, routine, --music) of each warm export with a bed."""
    return [("warm30_file_bed", r30, str(music)), ("warm30_generated_bed", r30, GENERATED_BED),
            ("warm120_file_bed", r120, str(music))]


def warm_beds(r30: Path, r120: Path, music: Path, out: Path, env: dict[str, str]) -> None:
    """Export each once: the bed decoded (or generated) into the cache, the level memos made."""
    for _, routine, bed in bed_runs(r30, r120, music):
        subprocess.run([VOICEFLEX, "export", str(routine), "-o", str(out), "--music", bed],
                       env=env, check=True, stdout=subprocess.DEVNULL)


def bed_rows(series: dict[str, Series], n: str, paired) -> list[Row]:
    file_bed = paired("warm30_file_bed", "floor_same")
    generated = paired("warm30_generated_bed", "floor_same")
    rss = series["warm120_file_bed"].median("max_rss_mb")
    return [
        Row(f"warm export, 30 min, {MUSIC_SECONDS // 60}-min MP3 bed", sec_of(series, "warm30_file_bed"), n),
        Row("  / floor (same settings)", f"{file_bed:.2f}x", n, "<= 1.2x", file_bed <= 1.2),
        Row(f"warm export, 30 min, generated bed ({GENERATED_BED})",
            sec_of(series, "warm30_generated_bed"), n),
        Row("  / floor (same settings)", f"{generated:.2f}x", n, "<= 1.2x", generated <= 1.2),
        Row(f"warm export, 2 h, {MUSIC_SECONDS // 60}-min MP3 bed", sec_of(series, "warm120_file_bed"), n),
        Row("peak RSS, 2-hour export, MP3 bed", f"{rss:.0f} MB", n, "<= 150 MB", rss <= 150),
    ]


def sec_of(series: dict[str, Series], key: str) -> str:
    return f"{series[key].median():.2f} s"


# ---- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: str
    runs: str
    goal: str = ""
    ok: bool | None = None


def _status(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def print_table(rows: list[Row], markdown: bool) -> None:
    headers = ["measure", "median", "runs", "goal", ""]
    cells = [[r.measure, r.value, r.runs, r.goal, _status(r.ok)] for r in rows]
    if markdown:
        print("| " + " | ".join(headers[:4]) + " | result |")
        print("|---|---:|---:|---|---|")
        for c in cells:
            print("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
        return
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())


def machine() -> dict[str, str]:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    ffmpeg = run("ffmpeg", "-version").splitlines()
    lame = re.search(r"--enable-libmp3lame", run("ffmpeg", "-hide_banner", "-buildconf"))
    espeak = run("espeak-ng", "--version").strip()
    numpy = run(PYTHON, "-c", "import numpy; print(numpy.__version__)").strip()
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": run(PYTHON, "--version").strip(),
        "numpy": numpy,
        "ffmpeg": ffmpeg[0] if ffmpeg else "?",
        "libmp3lame": "yes" if lame else "?",
        "espeak-ng": espeak,
    }


# ---- Piper ------------------------------------------------------------------------------------


def builtin_texts() -> list[str]:
    """The distinct cue texts of every built-in routine (67 here, ~156 s of speech)."""
    from voiceflex import pipeline
    from voiceflex.routine import builtin_names
    from voiceflex.timeline import speech_texts

    texts = [t for name in builtin_names() for t in speech_texts(pipeline.validate(name))]
    return list(dict.fromkeys(texts))


def piper_speaking(texts: list[str], workers: int) -> tuple[float, Run]:
    """(seconds of speech, the run) of Piper speaking `texts` from cold: workers start, load, speak."""
    from voiceflex.voice.piper_engine import PiperEngine

    load = os.getloadavg()[0]
    engine = PiperEngine()
    voice = engine.voices()[0].id
    began = time.perf_counter()
    spoken = sum(clip.ms for _, clip in engine.render(texts, voice, 160, workers=workers)) / 1000
    return spoken, Run(time.perf_counter() - began, 0.0, load)


def with_engine(folder: Path, name: str, engine: str) -> Path:
    """A copy of the built-in routine `name` (with the parts it includes) spoken by `engine`."""
    shutil.copytree(ROOT / "src" / "voiceflex" / "builtin_routines", folder, dirs_exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"voice:\n  engine: {engine}\n", encoding="utf-8")
    return path


# ---- the benchmark ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measure (default 5)")
    parser.add_argument("--pydub-runs", type=int, default=3,
                        help="runs of the slow pydub baseline (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="3 runs of each measure and 1 of the pydub baseline")
    parser.add_argument("--no-pydub", action="store_true", help="skip the pydub baseline")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every run to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (routines, files)")
    parser.add_argument("--only", choices=["piper"],
                        help="only the Piper rows (with the floor and pyttsx3's warm export beside them)")
    args = parser.parse_args()
    full = args.only is None
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background (`scripts/bench &`): the shell ignores
        # SIGINT for us, our children would inherit that, and `play` would
        # never hear the SIGINT that ends each first-sound measure.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    runs = 3 if args.quick else args.runs
    pydub_runs = 0 if args.no_pydub or not full else (1 if args.quick else min(args.pydub_runs, runs))

    work = Path(tempfile.mkdtemp(prefix="voiceflex-bench-"))
    warm_cache = work / "voice-cache"
    # The bench's own voice cache: the user's is left alone, and "warm" and
    # "cold" mean exactly that.
    os.environ["VOICEFLEX_CACHE_DIR"] = str(warm_cache)
    env = dict(os.environ)
    loads: list[float] = []
    try:
        note = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
        note(f"work folder: {work}")
        note("generating the 30-minute and 2-hour routines (fills the bench's voice cache)...")
        r30, info30 = make_routine(work, 30)
        r120, info120 = make_routine(work, 120) if full else (r30, info30)
        note("... and the 30-minute routine spoken by piper")
        p30, info_piper = make_routine(work, 30, "piper")
        piper_builtin = with_engine(work / "piper-routines", BUILTIN, "piper")
        for info in (info30, info120, info_piper) if full else (info30, info_piper):
            note(f"  {info['minutes']} min: {info['chapters']} chapters, {info['events']} events, "
                 f"{info['speech']} spoken cues ({info['distinct']} distinct, "
                 f"{info['spoken_s']:.0f} s of speech)")
        out = work / "out"
        music = make_music(work)
        warm_beds(r30, r120, music, out, env)
        # The floor's input: the routine's own track, as `export --format wav` writes it.
        # (This also leaves the level memo a warm `play` finds.)
        subprocess.run([VOICEFLEX, "export", str(r30), "-o", str(out), "--format", "wav"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([VOICEFLEX, "export", BUILTIN, "-o", str(out), "--format", "wav"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        for routine in dict.fromkeys((r30, r120, p30, piper_builtin)):  # their level memos, as any export leaves them
            subprocess.run([VOICEFLEX, "export", str(routine), "-o", str(out)],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        # The same cached cues without level memos, for the "no level memo" runs:
        # the warm cache keeps its memos for the warm runs.
        bare_cache = work / "voice-cache-bare"
        shutil.copytree(warm_cache, bare_cache, ignore=shutil.ignore_patterns("levels"))
        bare = {**env, "VOICEFLEX_CACHE_DIR": str(bare_cache)}

        def unmeasured() -> dict[str, str]:
            shutil.rmtree(bare_cache / "levels", ignore_errors=True)
            return bare
        wav30 = out / f"{r30.stem}.wav"
        floor_mp3 = str(out / "floor.mp3")
        ffmpeg = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(wav30),
                  "-c:a", "libmp3lame", "-b:a", BITRATE]
        silence = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
                   "-i", "anullsrc=r=22050:cl=mono", "-t", "1800", "-c:a", "libmp3lame",
                   "-b:a", BITRATE, "-compression_level", "7"]
        pydub_script = prepare_pydub(work / "pydub", r30) if pydub_runs else None

        series: dict[str, Series] = {}

        def record(key: str, run: Run) -> None:
            series.setdefault(key, Series()).runs.append(run)
            loads.append(run.load)

        def cold_cache() -> Path:
            cache = work / "cold-cache"
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir()
            return cache

        export = [VOICEFLEX, "export"]
        for i in range(runs if full else 0):
            note(f"export round {i + 1}/{runs} (load {os.getloadavg()[0]:.2f})")
            # Interleaved, so each comparison sees the same machine.
            record("floor_same", timed([*ffmpeg, "-compression_level", "7", "-y", floor_mp3]))
            record("warm30", timed([*export, str(r30), "-o", str(out)], env))
            record("floor_default", timed([*ffmpeg, "-y", floor_mp3]))
            # The fastest 30 minutes there are to encode: digital silence.
            record("floor_silence", timed(silence + ["-y", floor_mp3]))
            record("warm120", timed([*export, str(r120), "-o", str(out)], env))
            # Cues cached, but the routines never rendered: no level memo (e.g. after `plan`).
            record("warm30_unmeasured", timed([*export, str(r30), "-o", str(out)], unmeasured()))
            record("warm120_unmeasured", timed([*export, str(r120), "-o", str(out)], unmeasured()))
            for key, routine, bed in bed_runs(r30, r120, music):
                record(key, timed([*export, str(routine), "-o", str(out), "--music", bed], env))
            record("cold30", timed([*export, str(r30), "-o", str(out)],
                                   {**env, "VOICEFLEX_CACHE_DIR": str(cold_cache())}))
            if i < pydub_runs:
                note("  pydub baseline (slow)...")
                record("pydub", timed([PYTHON, str(pydub_script), str(pydub_script.parent),
                                       str(out / "pydub.mp3")]))

        for i in range(runs if full else 0):
            note(f"play round {i + 1}/{runs} (load {os.getloadavg()[0]:.2f})")
            capture = work / "capture"
            record("play_warm_builtin", first_sound(BUILTIN, warm_cache, capture))
            record("play_cold_builtin", first_sound(BUILTIN, cold_cache(), capture))
            record("play_warm_30", first_sound(str(r30), warm_cache, capture))
            record("play_cold_30", first_sound(str(r30), cold_cache(), capture))
            unmeasured()
            record("play_warm_30_unmeasured", first_sound(str(r30), bare_cache, capture))

        for i in range(runs if full else 0):
            record("help", timed([VOICEFLEX, "--help"], env))
            record("validate", timed([VOICEFLEX, "validate", str(r30)], env))

        texts = builtin_texts()
        spoken = 0.0
        for i in range(runs):
            note(f"piper round {i + 1}/{runs} (load {os.getloadavg()[0]:.2f})")
            if not full:  # what the Piper rows are compared with
                record("floor_same", timed([*ffmpeg, "-compression_level", "7", "-y", floor_mp3]))
                record("warm30", timed([*export, str(r30), "-o", str(out)], env))
            # One worker, then both cores, one after the other: the same machine for the ratio.
            for workers in (1, 2):
                spoken, run = piper_speaking(texts, workers)
                record(f"piper_speak_{workers}", run)
            record("piper_cold30", timed([*export, str(p30), "-o", str(out)],
                                         {**env, "VOICEFLEX_CACHE_DIR": str(cold_cache())}))
            record("piper_warm30", timed([*export, str(p30), "-o", str(out)], env))
            capture = work / "capture"
            record("play_warm_piper", first_sound(str(piper_builtin), warm_cache, capture))
            record("play_cold_piper", first_sound(str(piper_builtin), cold_cache(), capture))

        rss30 = rss_split(["export", str(r30), "-o", str(out)], env, work) if full else (0, 0)
        rss120 = rss_split(["export", str(r120), "-o", str(out)], env, work) if full else (0, 0)

        rows = (table(series, runs, pydub_runs) if full else []) + piper_table(series, runs, spoken)
        print()
        print_table(rows, args.markdown)
        print()
        if full:
            print(f"30-min routine: {info30['chapters']} chapters, {info30['events']} events, "
                  f"{info30['speech']} spoken cues, {info30['distinct']} distinct; "
                  f"2-hour: {info120['events']} events, {info120['distinct']} distinct cues")
            print(f"peak RSS split (own / largest child): 30 min {rss30[0]:.0f} / {rss30[1]:.0f} MB, "
                  f"2 h {rss120[0]:.0f} / {rss120[1]:.0f} MB")
        print(f"30-min routine with piper: {info_piper['events']} events, {info_piper['speech']} spoken "
              f"cues, {info_piper['distinct']} distinct, {info_piper['spoken_s']:.0f} s of speech")
        for hang in HANGS:
            print(f"WARNING: {hang}")
        print(f"load average (1 min) during the runs: median {statistics.median(loads):.2f}, "
              f"min {min(loads):.2f}, max {max(loads):.2f} on {os.cpu_count()} CPUs")
        for key, value in machine().items():
            print(f"{key}: {value}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "machine": machine(), "routines": [info30, info120, info_piper],
                "rss_split_mb": {"30": rss30, "120": rss120},
                "series": {k: [vars(r) for r in s.runs] for k, s in series.items()},
            }, indent=2))
        return 0
    finally:
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def table(series: dict[str, Series], runs: int, pydub_runs: int) -> list[Row]:
    def sec(key: str) -> str:
        return f"{series[key].median():.2f} s"

    def paired(a: str, b: str) -> float:
        """Median of the per-round ratios a/b (runs of a round ran one after the other)."""
        return statistics.median(x.seconds / y.seconds for x, y in
                                 zip(series[a].runs, series[b].runs, strict=True))

    n = str(runs)
    rows = [
        Row("ffmpeg alone, 30 min WAV -> MP3 64k -q 7 (floor, same settings)", sec("floor_same"), n),
        Row("ffmpeg alone, 30 min WAV -> MP3 64k default -q 3", sec("floor_default"), n),
        Row("ffmpeg alone, 30 min of digital silence -> MP3 64k -q 7", sec("floor_silence"), n),
    ]
    warm = paired("warm30", "floor_same")
    unmeasured = paired("warm30_unmeasured", "floor_same")
    rows += [
        Row("warm export, 30 min", sec("warm30"), n),
        Row("  / floor (same settings)", f"{warm:.2f}x", n, "<= 1.2x", warm <= 1.2),
        Row("  / ffmpeg default settings", f"{paired('warm30', 'floor_default'):.2f}x", n),
        Row("  / ffmpeg encoding silence", f"{paired('warm30', 'floor_silence'):.2f}x", n),
        Row("warm export, 30 min, no level memo", sec("warm30_unmeasured"), n),
        Row("  / floor (same settings)", f"{unmeasured:.2f}x", n, "<= 1.2x", unmeasured <= 1.2),
    ]
    cold = paired("cold30", "floor_same")
    rows += [
        Row("cold export, 30 min (empty voice cache)", sec("cold30"), n),
        Row("  / floor (same settings)", f"{cold:.2f}x", n, "<= 1.5x", cold <= 1.5),
        Row("  / ffmpeg default settings", f"{paired('cold30', 'floor_default'):.2f}x", n),
    ]
    if pydub_runs:
        # Few pydub runs: against the median warm export of the same run.
        speed = series["pydub"].median() / series["warm30"].median()
        rows += [
            Row("pydub baseline, 30 min (overlay per cue, export 64k)", sec("pydub"), str(pydub_runs)),
            Row("  voiceflex warm export speed-up", f"{speed:.1f}x", str(pydub_runs), ">= 20x",
                speed >= 20),
        ]
    rows += bed_rows(series, n, paired)
    rss30, rss120 = series["warm30"].median("max_rss_mb"), series["warm120"].median("max_rss_mb")
    rss120_unmeasured = series["warm120_unmeasured"].median("max_rss_mb")
    growth = paired("warm120", "warm30")
    rows += [
        Row("peak RSS, 30-min export", f"{rss30:.0f} MB", n, "<= 150 MB", rss30 <= 150),
        Row("warm export, 2 h", sec("warm120"), n),
        Row("peak RSS, 2-hour export", f"{rss120:.0f} MB", n, "<= 150 MB", rss120 <= 150),
        Row("export, 2 h, no level memo", sec("warm120_unmeasured"), n),
        Row("peak RSS, 2-hour export, no level memo", f"{rss120_unmeasured:.0f} MB", n,
            "<= 150 MB", rss120_unmeasured <= 150),
        Row("2 h time / 30 min time", f"{growth:.2f}", n, "~4 (linear), <= 4.4", growth <= 4.4),
    ]
    for key, what, goal in [("play_warm_builtin", f"first sound, play {BUILTIN}, warm", 0.5),
                            ("play_warm_30", "first sound, play 30-min routine, warm", 0.5),
                            ("play_warm_30_unmeasured",
                             "first sound, play 30-min routine, warm, no level memo", 0.5),
                            ("play_cold_builtin", f"first sound, play {BUILTIN}, cold", 1.5),
                            ("play_cold_30", "first sound, play 30-min routine, cold", 1.5)]:
        value = series[key].median()
        rows.append(Row(what, f"{value:.2f} s", n, f"<= {goal} s", value <= goal))
    helped = series["help"].median()
    rows += [
        Row("voiceflex --help", f"{helped:.3f} s", n, "<= 0.15 s", helped <= 0.15),
        Row("voiceflex validate (30-min routine)", f"{series['validate'].median():.3f} s", n),
    ]
    return rows



def piper_table(series: dict[str, Series], runs: int, spoken: float) -> list[Row]:
    """The Piper rows: cold speaking on one and two cores, 30-minute exports, first sound."""
    n = str(runs)

    def paired(a: str, b: str) -> float:
        return statistics.median(x.seconds / y.seconds for x, y in
                                 zip(series[a].runs, series[b].runs, strict=True))

    one, two = (spoken / series[f"piper_speak_{w}"].median() for w in (1, 2))
    cores = paired("piper_speak_1", "piper_speak_2")
    warm = paired("piper_warm30", "floor_same")
    same = paired("piper_warm30", "warm30")
    rows = [
        Row(f"piper cold speaking, built-in cues ({spoken:.0f} s of speech), 1 worker",
            f"{one:.1f}x real time", n),
        Row("piper cold speaking, the same, 2 workers", f"{two:.1f}x real time", n),
        Row("  2 workers / 1 worker", f"{cores:.2f}x", n, ">= 1.8x", cores >= 1.8),
        Row("piper cold export, 30 min (empty voice cache)", f"{series['piper_cold30'].median():.2f} s", n),
        Row("  / floor (same settings)", f"{paired('piper_cold30', 'floor_same'):.2f}x", n),
        Row("piper warm export, 30 min", f"{series['piper_warm30'].median():.2f} s", n),
        Row("  / floor (same settings)", f"{warm:.2f}x", n, "<= 1.0x", warm <= 1.0),
        Row("  / pyttsx3 warm export, 30 min", f"{same:.2f}x", n, "~1.0x (0.9-1.1)", 0.9 <= same <= 1.1),
    ]
    for key, what, goal in [("play_warm_piper", f"first sound, play {BUILTIN} with piper, warm", 0.5),
                            ("play_cold_piper", f"first sound, play {BUILTIN} with piper, cold", 6.0)]:
        value = series[key].median()
        rows.append(Row(what, f"{value:.2f} s", n, f"<= {goal} s", value <= goal))
    return rows


if __name__ == "__main__":
    sys.exit(main())
