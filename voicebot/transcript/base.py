"""The free-form engine interface, the result it produces, and a fake.

An engine transcribes one whole utterance at a time (a large-vocabulary
pass is not streamed: it runs after the utterance has ended, off the
decision path). Engines are blocking and run in a transcript worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from voicebot.types import Transcript, Word


class FreeFormEngine(Protocol):
    name: str  # "whisper" | "vosk" | "fake"
    model: str  # what the operator configured, for the record ("whisper-tiny.en")
    sample_rate: int  # rate of the PCM16 that transcribe() expects

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        """`prompt`: words the caller is likely to use, to steer an engine that
        takes them (Whisper's initial prompt); others ignore it."""


def transcribe_all(engine: FreeFormEngine, pcms: list[bytes], prompt: str = "",
                   checks: list[str] | None = None) -> list[Transcript]:
    """Several utterances with one prompt: in one batch where the engine decodes
    batches (Whisper), else one after another. `checks`: another recogniser's
    words per utterance, scored against the audio by engines that can
    (Transcript.fit); others leave them unchecked."""
    many = getattr(engine, "transcribe_many", None)
    if many is not None:
        result: list[Transcript] = many(pcms, prompt, checks)
        return result
    return [engine.transcribe(pcm, prompt) for pcm in pcms]


@dataclass(frozen=True)
class FreeText:
    """One utterance's free-form transcript, as stored and shown beside the
    decision engine's words (matched by `start`, the utterance's call time)."""

    start: float  # seconds of call audio, as the decision utterance's
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = ()  # times from the start of the call
    engine: str = ""
    model: str = ""
    status: str = "ok"  # ok | skipped (queue full or history too long) | failed
    cpu_s: float = 0.0  # engine CPU time spent on it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
            "confidence": round(self.confidence, 3), "engine": self.engine, "model": self.model,
            "status": self.status, "cpu_s": round(self.cpu_s, 3),
            "words": [{"text": w.text, "conf": round(w.conf, 3), "start": round(w.start, 3),
                       "end": round(w.end, 3)} for w in self.words],
            **self.extra,
        }


class FakeFreeFormEngine:
    """Answers from a script keyed by utterance length (in samples), or says how
    much audio it got; `fail` raises for the lengths listed. For fast tests."""

    name = "fake"

    def __init__(self, script: dict[int, str] | None = None, sample_rate: int = 16000,
                 fail: tuple[int, ...] = (), model: str = "fake-model",
                 fit: float = 0.0) -> None:
        self.script = script or {}
        self.fit = fit  # reported for each utterance asked to check words
        self.sample_rate = sample_rate
        self.fail = fail
        self.model = model
        self.seen: list[int] = []
        self.prompts: list[str] = []
        self.checks: list[str] = []

    def transcribe_many(self, pcms: list[bytes], prompt: str = "",
                        checks: list[str] | None = None) -> list[Transcript]:
        out = []
        for pcm, check in zip(pcms, checks or [""] * len(pcms), strict=True):
            self.checks.append(check)
            heard = self.transcribe(pcm, prompt)
            fit = self.fit if check else None
            out.append(Transcript(heard.text, heard.confidence, heard.words, fit))
        return out

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        n = len(pcm) // 2
        self.seen.append(n)
        self.prompts.append(prompt)
        if n in self.fail:
            raise RuntimeError(f"fake engine told to fail on {n} samples")
        text = self.script.get(n, f"heard {n} samples")
        seconds = n / self.sample_rate
        words = tuple(Word(w, 0.9, seconds * i / max(1, len(text.split())),
                           seconds * (i + 1) / max(1, len(text.split())))
                      for i, w in enumerate(text.split()))
        return Transcript(text, 0.9, words)
