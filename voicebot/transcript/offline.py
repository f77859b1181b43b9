"""`voicebot transcribe --engine whisper|vosk`: the free-form engine behind the
SpeechEngine interface, so recordings go through the same VAD cutting as a call."""

from __future__ import annotations

from pathlib import Path

from voicebot.transcript.base import FreeFormEngine
from voicebot.transcript.engines import load_free_engine
from voicebot.types import Transcript


class _Utterance:
    def __init__(self, engine: FreeFormEngine) -> None:
        self._engine = engine
        self._audio: list[bytes] = []

    def accept(self, pcm: bytes) -> None:
        self._audio.append(pcm)

    def finish(self) -> Transcript:
        return self._engine.transcribe(b"".join(self._audio))


class FreeFormSpeechEngine:
    """A FreeFormEngine that reads as a (whole-utterance) SpeechEngine."""

    def __init__(self, engine: FreeFormEngine) -> None:
        self.engine = engine
        self.name, self.sample_rate = engine.name, engine.sample_rate
        self.language = ""
        self.description = f"{engine.name} {engine.model}, free-form (transcript engine)"

    def stream(self, context: str = "") -> _Utterance:  # free-form: no listening contexts
        return _Utterance(self.engine)


def offline_engine(engine: str, model: str, language: str,
                   models_dir: Path = Path("models")) -> FreeFormSpeechEngine:
    """ConfigError for bad settings, as at `serve`; all the machine's cores may be used."""
    free = load_free_engine(engine, model, language, models_dir, threads=0)
    wrapped = FreeFormSpeechEngine(free)
    wrapped.language = language
    return wrapped
