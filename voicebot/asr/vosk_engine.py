"""Vosk engine: one Model per process, one KaldiRecognizer per utterance.

Grammar mode (`KaldiRecognizer(model, rate, phrases_json)`) when the language
pack has sentences; word confidences and timings from `SetWords(True)`.
The utterance confidence is the lowest word confidence: one doubtful word
makes the whole request doubtful.
"""

from __future__ import annotations

import json
from pathlib import Path

import vosk

from voicebot.dialog.lang import LanguagePack
from voicebot.types import Transcript, Word


class VoskStream:
    def __init__(self, recognizer: vosk.KaldiRecognizer) -> None:
        self._rec = recognizer

    def accept(self, pcm: bytes) -> None:
        self._rec.AcceptWaveform(pcm)

    def finish(self) -> Transcript:
        result = json.loads(self._rec.FinalResult())
        words = tuple(
            Word(w["word"], float(w.get("conf", 0.0)), float(w["start"]), float(w["end"]))
            for w in result.get("result", []) if w.get("word") and w["word"] != "[unk]"
        )
        text = " ".join(w.text for w in words)
        confidence = min((w.conf for w in words), default=0.0)
        return Transcript(text, confidence, words)


class VoskEngine:
    name = "vosk"

    def __init__(self, model_path: Path, pack: LanguagePack, sample_rate: int = 16000) -> None:
        vosk.SetLogLevel(-1)
        self.language = pack.code
        self.sample_rate = sample_rate
        self.model = vosk.Model(str(model_path))
        self._grammar = json.dumps(list(pack.grammar) + list(pack.fillers), ensure_ascii=False)
        mode = f"grammar of {len(pack.grammar)} sentences" if pack.grammar else "free"
        self._use_grammar = bool(pack.grammar)
        self.description = f"vosk {model_path} ({pack.code}), {mode}"

    def stream(self) -> VoskStream:
        if self._use_grammar:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate, self._grammar)
        else:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
        rec.SetWords(True)
        return VoskStream(rec)
