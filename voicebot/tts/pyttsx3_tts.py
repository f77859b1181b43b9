"""pyttsx3 (espeak-ng driver on Linux) rendering to WAV, read back as samples.

pyttsx3 engines are not thread-safe, so `PromptCache` calls this from one
dedicated worker thread only.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from voicebot.audio.wav import read_wav
from voicebot.errors import EngineError


class Pyttsx3Synthesizer:
    name = "pyttsx3"

    def __init__(self, rate_wpm: int = 165) -> None:
        self._rate_wpm = rate_wpm
        self._engine = None

    def _get_engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            import pyttsx3

            try:
                self._engine = pyttsx3.init()
            except (RuntimeError, OSError) as exc:
                raise EngineError(f"pyttsx3 could not start (is espeak-ng installed?): {exc}") from exc
            self._engine.setProperty("rate", self._rate_wpm)
        return self._engine

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        engine = self._get_engine()
        fd, name = tempfile.mkstemp(suffix=".wav", prefix="voicebot-tts-")
        os.close(fd)
        path = Path(name)
        try:
            engine.setProperty("voice", voice)
            engine.save_to_file(text, str(path))
            # The espeak driver prints the file name to stdout; keep server output clean.
            with contextlib.redirect_stdout(io.StringIO()):
                engine.runAndWait()
            samples, rate = read_wav(path)
        except (RuntimeError, OSError, EOFError) as exc:
            raise EngineError(f"pyttsx3 failed to render a prompt: {exc}") from exc
        finally:
            path.unlink(missing_ok=True)
        if samples.size == 0:
            raise EngineError("pyttsx3 rendered no audio")
        return samples, rate
