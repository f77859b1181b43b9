"""The recogniser interface every engine implements.

An engine is created once per process (it owns the loaded model) and hands
out one stream per utterance. Streams are driven from a worker thread by
`asr.runner`; nothing here may touch the event loop.
"""

from __future__ import annotations

from typing import Protocol

from voicebot.types import Transcript


class RecognizerStream(Protocol):
    def accept(self, pcm: bytes) -> None:
        """Feed PCM16 little-endian mono audio at the engine's sample rate."""

    def finish(self) -> Transcript:
        """End the utterance and return the final result. The stream is then spent."""


class SpeechEngine(Protocol):
    name: str  # "vosk" | "pocketsphinx" | ...
    language: str  # "en", "ko"
    sample_rate: int  # the rate accept() expects
    description: str  # one line for the start-up log: engine, model path, mode

    def stream(self, context: str = "") -> RecognizerStream:
        """A stream for one utterance, listening for `context` (a ListenContext
        name of the vocabulary the engine was built with; "" = its first)."""
        ...
