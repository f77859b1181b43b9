"""Offline recognition of recordings with the configured engine (no server):
the same VAD segmentation and engine a live call uses, one file at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.asr.base import SpeechEngine
from voicebot.audio.vad import (
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechStarted,
    VadConfig,
)
from voicebot.audio.wav import read_wav
from voicebot.types import Transcript


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    transcript: Transcript


def transcribe_file(path: Path, engine: SpeechEngine, vad: VadConfig | None = None) -> list[Segment]:
    samples, rate = read_wav(path, engine.sample_rate)
    detector = SpeechDetector(rate, vad)
    segments: list[Segment] = []
    stream, start = None, 0.0
    tail = np.zeros(rate // 2, np.int16)  # let a final utterance end naturally
    for event in detector.push(np.concatenate((samples, tail))) + detector.flush():
        if isinstance(event, SpeechStarted):
            stream, start = engine.stream(), event.at
        elif isinstance(event, SpeechAudio) and stream is not None:
            stream.accept(event.samples.tobytes())
        elif isinstance(event, SpeechEnded) and stream is not None:
            segments.append(Segment(start, event.at, stream.finish()))
            stream = None
    return segments


def segment_json(segment: Segment) -> dict[str, object]:
    t = segment.transcript
    return {
        "start": round(segment.start, 3), "end": round(segment.end, 3), "text": t.text,
        "confidence": round(t.confidence, 3),
        "words": [{"text": w.text, "conf": round(w.conf, 3), "start": round(segment.start + w.start, 3),
                   "end": round(segment.start + w.end, 3)} for w in t.words],
    }
