"""Exports checked the way a phone (and a checker) sees them: real espeak speech, real ffmpeg.

Each export is decoded with ffmpeg and checked for length, chapters, tags,
loudness and true peak (ffmpeg's ebur128 filter, and pyloudnorm), and for
its tones at their planned times.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from helpers.fakes import FakeClip as Clip, Meta, export_parts

from voiceflex import export, pipeline
from voiceflex.audio.mixer import total_samples
from voiceflex.audio.output_format import output_format
from voiceflex.audio.rate import RATE
from voiceflex.errors import EncoderError, Location
from voiceflex.export import atomic, parallel, writer
from voiceflex.routine.model import DEFAULT_TONES
from voiceflex.timeline import Chapter, Event, Timeline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("espeak-ng")),
                       reason="needs ffmpeg and espeak-ng"),
]

HERE = Location("real.yaml", 1, 1)
CUES = [
    "Kneel on your left knee.",
    "Keep your hips square, and your back tall.",
    "Breathe in",
    "Breathe out",
    "Three", "Two", "One",
    "Good. Now stand up slowly, and shake out your legs.",
]


def espeak(text: str, folder: Path) -> Clip:
    """A cue spoken by `espeak-ng -w`, trimmed of its leading and trailing silence."""
    path = folder / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    loud = np.flatnonzero(np.abs(x) > 100)
    return Clip(x[loud[0]:loud[-1] + 1].copy())


@pytest.fixture(scope="module")
def real_routine(tmp_path_factory):
    """~40 s: speech, every tone kind (fixed tones away from speech), glides under speech."""
    folder = tmp_path_factory.mktemp("espeak")
    clips = {text: espeak(text, folder) for text in CUES}
    ms = {text: round(len(c.samples) * 1000 / RATE) for text, c in clips.items()}
    events, t = [], 0

    def say(text, at):
        events.append(Event("speech", at, at + ms[text], 0, HERE, text=text))
        return at + ms[text]

    def beep(name, at, end=None):
        spec = DEFAULT_TONES[name]
        freq = (spec.freq, spec.freq_end) if spec.is_glide else spec.freq
        events.append(Event("tone", at, end or at + spec.ms, 0, HERE, name=name, freq_hz=freq))

    t = say(CUES[0], 300) + 600
    beep("start", t)
    t = say(CUES[1], t + 180) + 700
    for k in range(3):
        beep("tick", t + 1000 * k)
    t += 3000
    beep("switch", t)
    set_up_end = t + 800
    t = set_up_end
    beep("inhale", t, t + 4000)
    say("Breathe in", t)
    t += 6000
    beep("exhale", t, t + 6000)
    say("Breathe out", t)
    breathe_end = t + 6500
    t = breathe_end
    for k, word in enumerate(["Three", "Two", "One"]):
        say(word, t + 1000 * k)
    t += 3000
    beep("end", t)
    t = say(CUES[-1], t + 1000) + 500
    beep("done", t)
    duration = t + 1200
    events.sort(key=lambda e: e.start_ms)
    chapters = (Chapter("Set up", 0, set_up_end), Chapter("Breathe", set_up_end, breathe_end),
                Chapter("Finish", breathe_end, duration))
    timeline = Timeline("Kneeling hip flexor stretch", duration, chapters, tuple(events))
    return timeline, clips


@pytest.fixture(scope="module")
def mp3(real_routine, tmp_path_factory):
    timeline, clips = real_routine
    out = tmp_path_factory.mktemp("export") / "hip-flexor-stretch.mp3"
    export_parts(timeline, Meta(), clips, DEFAULT_TONES, out)
    return out


def decode(path: Path) -> np.ndarray:
    """The file as ffmpeg decodes it (encoder delay and padding removed), float at 22050 Hz."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                          "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated loudness LUFS, true peak dBTP) by ffmpeg's ebur128 filter."""
    log = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af",
                          "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    summary = log[log.rindex("Summary:"):]
    loudness = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return loudness, peak


def test_mp3_decodes_to_the_plans_length(mp3, real_routine):
    timeline, _ = real_routine
    decoded_ms = len(decode(mp3)) * 1000 / RATE
    assert abs(decoded_ms - timeline.duration_ms) <= 50
    assert abs(decoded_ms - timeline.duration_ms) <= 1  # gapless: in fact exact


def test_mp3_tags_and_ordered_chapters(mp3, real_routine):
    from mutagen.id3 import ID3, CTOCFlags
    from mutagen.mp3 import MP3

    timeline, _ = real_routine
    tags = ID3(mp3)
    assert tags.version[:2] == (2, 3)
    assert str(tags["TIT2"]) == "Kneeling hip flexor stretch"
    assert str(tags["TPE1"]) == "Test Author"
    assert str(tags["TALB"]) == "voiceflex"
    assert tags.getall("COMM")[0].text == ["Loosens tight hip flexors after a day of sitting."]
    cover = tags.getall("APIC")[0]
    assert cover.mime == "image/png" and cover.data.startswith(b"\x89PNG")
    (toc,) = tags.getall("CTOC")
    assert toc.flags & CTOCFlags.TOP_LEVEL and toc.flags & CTOCFlags.ORDERED
    by_id = {c.element_id: c for c in tags.getall("CHAP")}
    chaps = [by_id[i] for i in toc.child_element_ids]
    assert [c.sub_frames["TIT2"].text[0] for c in chaps] == ["Set up", "Breathe", "Finish"]
    for chap, planned in zip(chaps, timeline.chapters, strict=True):
        assert abs(chap.start_time - planned.start_ms) <= 20
        assert abs(chap.end_time - planned.end_ms) <= 20
    assert MP3(mp3).info.sample_rate == RATE
    # ffmpeg reads the same chapters
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(mp3)],
        capture_output=True, text=True, check=True).stdout)
    assert [c["tags"]["title"] for c in probe["chapters"]] == ["Set up", "Breathe", "Finish"]
    for c, planned in zip(probe["chapters"], timeline.chapters, strict=True):
        assert abs(float(c["start_time"]) * 1000 - planned.start_ms) <= 20


def test_mp3_loudness_and_true_peak(mp3):
    loudness, peak = ebur128(mp3)
    assert abs(loudness + 16.0) <= 0.5  # SPEC: within 1 LU; the plan aims at -16.0
    assert peak <= -1.0
    reference = pyloudnorm.Meter(RATE).integrated_loudness(decode(mp3))
    assert abs(reference + 16.0) <= 0.6


def goertzel_share(x: np.ndarray, freq: float) -> float:
    """The share of x's energy at `freq` (Goertzel, Hann-windowed)."""
    w = x * np.hanning(len(x))
    n = np.arange(len(w))
    power = abs(np.sum(w * np.exp(-2j * np.pi * freq * n / RATE))) ** 2
    return float(2 * power / (np.sum(w ** 2) * np.sum(np.hanning(len(x)) ** 2)))


def test_every_fixed_tone_sounds_at_its_planned_start(mp3, real_routine):
    timeline, _ = real_routine
    audio = decode(mp3)
    fixed = [e for e in timeline.events if e.kind == "tone" and not isinstance(e.freq_hz, tuple)]
    assert {e.name for e in fixed} == {"start", "tick", "switch", "end", "done"}
    for e in fixed:
        start = round(e.start_ms * RATE / 1000)
        window = round(min(35, e.end_ms - e.start_ms) * RATE / 1000)
        during = audio[start:start + window]
        before = audio[start - round(0.03 * RATE):start]
        assert goertzel_share(during, e.freq_hz) > 0.5, e
        assert np.sum(during ** 2) > 30 * np.sum(before ** 2) + 1e-9, e  # it starts on time


def test_glides_rise_and_fall_under_the_voice(mp3, real_routine):
    timeline, _ = real_routine
    audio = decode(mp3)
    for e in timeline.events:
        if e.kind == "tone" and isinstance(e.freq_hz, tuple):
            lo, hi = e.freq_hz
            mid = round((e.start_ms + e.end_ms) / 2 * RATE / 1000)
            segment = audio[mid:mid + round(0.3 * RATE)]
            spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
            freqs = np.fft.rfftfreq(len(segment), 1 / RATE)
            band = (freqs > min(lo, hi) * 0.9) & (freqs < max(lo, hi) * 1.1)
            assert spectrum[band].max() > 0.5 * spectrum.max(), e


def test_wav_export_length_and_levels(real_routine, tmp_path):
    timeline, clips = real_routine
    out = export_parts(timeline, Meta(), clips, DEFAULT_TONES, tmp_path / "hip.wav", fmt="wav")
    with wave.open(str(out)) as w:
        assert w.getnframes() == round(timeline.duration_ms * RATE / 1000)
    loudness, peak = ebur128(out)
    assert abs(loudness + 16.0) <= 0.5 and peak <= -1.0


@pytest.mark.parametrize("bitrate,within", [("32k", 1.0), ("48k", 0.5), ("128k", 0.5)])
def test_other_bitrates_keep_loudness_and_peak(real_routine, tmp_path, bitrate, within):
    """Low bitrates raise peaks more, leaving less room: at 32k the level may give way a little."""
    timeline, clips = real_routine
    out = export_parts(timeline, Meta(), clips, DEFAULT_TONES, tmp_path / "hip.mp3",
                       bitrate=bitrate)
    loudness, peak = ebur128(out)
    assert abs(loudness + 16.0) <= within and peak <= -1.0


def test_split_files_and_playlist(real_routine, tmp_path):
    timeline, clips = real_routine
    folder = tmp_path / "hip-flexor-stretch"
    playlist = export_parts(timeline, Meta(), clips, DEFAULT_TONES, folder, split=True)
    lines = playlist.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    entries = list(zip(lines[1::2], lines[2::2], strict=True))
    assert [name for _, name in entries] == ["01-set-up.mp3", "02-breathe.mp3", "03-finish.mp3"]
    for (info, name), chapter in zip(entries, timeline.chapters, strict=True):
        length = chapter.end_ms - chapter.start_ms
        assert info == f"#EXTINF:{(length + 500) // 1000},{chapter.title}"  # seconds, half up
        path = playlist.parent / name  # relative to the playlist
        assert abs(len(decode(path)) * 1000 / RATE - length) <= 50
        from mutagen.id3 import ID3

        assert str(ID3(path)["TIT2"]) == chapter.title
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [n for _, n in entries] + [playlist.name, ".voiceflex-split.json"])


def test_real_ffmpeg_failure_is_reported_and_cleaned_up(real_routine, tmp_path, monkeypatch):
    timeline, clips = real_routine
    out = tmp_path / "hip.mp3"
    out.write_bytes(b"previous")
    gone = tmp_path / "vanished" / "x.part"  # ffmpeg cannot create its output here
    monkeypatch.setattr(atomic, "temp_name", lambda final: gone)
    with pytest.raises(EncoderError, match="No such file or directory"):
        export_parts(timeline, Meta(), clips, DEFAULT_TONES, out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hip.mp3"]


def test_file_size_limit_mid_encode(real_routine, tmp_path):
    """ffmpeg killed for writing past RLIMIT_FSIZE, as on a full quota: clean error, no files."""
    timeline, clips = real_routine
    np.savez(tmp_path / "clips.npz", **{f"c{i}": c.samples for i, c in enumerate(clips.values())})
    script = f"""
import resource, signal, sys
from pathlib import Path
import numpy as np
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent.parent)!r}]
from test_export_real import Clip, Meta, export_parts
from voiceflex import export
from voiceflex.errors import EncoderError
from voiceflex.routine.model import DEFAULT_TONES
from voiceflex.timeline import Timeline, Chapter, Event
import pickle
timeline = pickle.loads(Path({str(tmp_path / 'tl.pickle')!r}).read_bytes())
data = np.load({str(tmp_path / 'clips.npz')!r})
clips = {{text: Clip(data[f"c{{i}}"]) for i, text in enumerate({list(clips)!r})}}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # this process writes nothing big itself
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.RLIM_INFINITY))
try:
    export_parts(timeline, Meta(), clips, DEFAULT_TONES,
                 Path({str(tmp_path / 'out' / 'hip.mp3')!r}))
except EncoderError as e:
    print(e)
    sys.exit(3)
"""
    import pickle

    (tmp_path / "tl.pickle").write_bytes(pickle.dumps(timeline))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 3, result.stderr
    assert "ffmpeg could not encode" in result.stdout
    assert "SIGXFSZ" in result.stdout or "File too large" in result.stdout
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture(scope="module", params=[None, "rain"], ids=["no-bed", "rain-bed"])
def desk_reset(request, tmp_path_factory):
    """The built-in desk-reset (4:37) planned with the real engine, in a private voice cache;
    alone, and over a sound bed (never silent, so each join is in sound)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path_factory.mktemp("voice-cache")))
        return pipeline.plan("desk-reset", music=request.param)


def test_builtin_routine_encoded_in_parts_is_one_encode_spliced(desk_reset, tmp_path, monkeypatch):
    """On two cores in two parts, spliced; on one core in one: the same length, level and samples."""
    plan = desk_reset
    total = total_samples(plan.timeline)
    assert len(parallel.plan(total, 2)) == 2
    spliced = []
    real = parallel.encode

    def encode(track, parts, *args, **kwargs):
        spliced.append((parts, real(track, parts, *args, **kwargs)))
        return spliced[-1][1]

    monkeypatch.setattr(parallel, "encode", encode)
    outs, samples = {}, None
    for cores in (2, 1):
        monkeypatch.setattr(writer, "_cores", lambda cores=cores: cores)
        track = plan.track(output_format("mp3", "64k"))
        try:
            outs[cores] = export.write(track, plan.timeline, plan.routine,
                                       tmp_path / f"{cores}" / "desk-reset.mp3", output=track.output)
            samples = np.concatenate(list(track.read()))
        finally:
            track.close()
        assert sorted(p.name for p in outs[cores].parent.iterdir()) == ["desk-reset.mp3"]
    ((parts, joined),) = spliced  # two cores only, and the parts were spliced
    assert joined is True
    two, one = decode(outs[2]), decode(outs[1])
    assert len(two) == len(one) == total
    at = parts[1].join * 576 - parallel.CODEC_DELAY
    if plan.bed is not None:  # the join is in sound: the bed's
        assert np.count_nonzero(samples[at - 576:at + 576]) > 1100
    np.testing.assert_array_equal(two[:at], one[:at])  # LAME is deterministic
    # Around the join, as good as one encode (signal to coding noise, in dB).
    window = slice(at - RATE // 4, at + RATE // 4)
    assert snr(samples[window], two[window]) == pytest.approx(snr(samples[window], one[window]), abs=1.5)
    (loud_two, peak_two), (loud_one, _) = ebur128(outs[2]), ebur128(outs[1])
    assert abs(loud_two - loud_one) < 0.1
    assert abs(loud_two + 16.0) <= 0.5 and peak_two <= -1.0
    # ffmpeg's decoder in its strict mode finds no damage in the stream (it
    # would not notice a bit reservoir left behind at the join: the SNR around
    # the join above does), and another decoder (mpg123, as many players use)
    # reads it without a complaint, gapless to the same length, and to the
    # same samples within rounding.
    strict = subprocess.run(["ffmpeg", "-v", "error", "-err_detect", "crccheck+bitstream+buffer+explode",
                             "-i", str(outs[2]), "-f", "null", "-"], capture_output=True, check=True)
    assert strict.stderr == b""
    run = subprocess.run(["mpg123", "-q", "-s", str(outs[2])], capture_output=True, check=True)
    assert run.stderr == b""
    other = np.frombuffer(run.stdout, "<i2") / 32768.0
    assert len(other) == total
    assert np.abs(other - two).max() <= 1 / 32768


def snr(signal: np.ndarray, decoded: np.ndarray) -> float:
    x, y = signal.astype(float), decoded.astype(float) * 32768.0
    noise = x - (x @ y) / (y @ y) * y  # LAME decodes a little quieter: fit the level
    return 10 * np.log10((x @ x) / (noise @ noise))


@pytest.mark.parametrize("steps", [
    # Brief cues over long quiet glides: -17.9 LUFS before the tones made up for
    # the cues turned down to the ceiling.
    "  - breathe: {in: 4s, out: 6s, cycles: 15}\n",
    # A long hold of nothing but ticks: -20.5 LUFS before, -18.1 with the tones
    # raised while ticks lasted 40 ms (80 ms now).
    "  - say: Hold the stretch and follow the ticks.\n  - hold: 3m\n    tick: true\n"
    "  - say: Release.\n",
], ids=["breathing", "ticking"])
def test_routines_carried_by_their_tones_still_measure_minus_16_lufs(tmp_path, monkeypatch, steps):
    """SPEC 5 (-16 +- 1 LUFS, <= -1 dBTP) for routines whose voice alone cannot carry the level."""
    monkeypatch.setenv("VOICEFLEX_CACHE_DIR", str(tmp_path / "voice-cache"))
    routine = tmp_path / "tones.yaml"
    routine.write_text("title: Carried by tones\nsteps:\n" + steps)
    out = pipeline.export(str(routine), tmp_path / "out")
    loud, peak = ebur128(out)
    assert abs(loud + 16.0) <= 0.5
    assert peak <= -1.0
    assert len(decode(out)) == total_samples(pipeline.plan(str(routine)).timeline)
