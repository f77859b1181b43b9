"""pyttsx3 (espeak-ng driver on Linux) rendering to WAV, read back as samples.

pyttsx3 engines are not thread-safe, and `pyttsx3.init()` hands every caller
in a process the same engine object, so two synthesizers (two apps in one
process, as in the tests) would share it from two threads: all rendering in a
process goes through one lock. The espeak driver synthesises on espeak's own
thread and its runAndWait can return before that thread has written the file
(seen on a process's first prompts, one app alone), so a render also waits for
the driver's end-of-utterance notice. A render that still comes back broken is
retried (up to three attempts) before it counts as a TTS failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.wav import read_wav
from voicebot.errors import EngineError

log = logging.getLogger("voicebot.tts")
_ENGINE_LOCK = threading.Lock()
_ATTEMPTS = 3
_RETRY_PAUSE_S = 0.2
_FINISH_TIMEOUT_S = 30.0


class Pyttsx3Synthesizer:
    name = "pyttsx3"

    def __init__(self, rate_wpm: int = 165) -> None:
        self._rate_wpm = rate_wpm
        self._engine: Any = None  # pyttsx3 has no type hints

    def _get_engine(self) -> Any:
        if self._engine is None:
            import pyttsx3

            try:
                self._engine = pyttsx3.init()
            except (RuntimeError, OSError) as exc:
                raise EngineError(f"pyttsx3 could not start (is espeak-ng installed?): {exc}") from exc
            self._engine.setProperty("rate", self._rate_wpm)
        return self._engine

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        with _ENGINE_LOCK:
            for attempt in range(_ATTEMPTS):
                try:
                    return self._render(text, voice)
                except EngineError as exc:
                    if attempt == _ATTEMPTS - 1:
                        raise
                    log.warning("pyttsx3 render failed (%s); trying again", exc)
                    time.sleep(_RETRY_PAUSE_S)
        raise AssertionError("unreachable")

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        engine = self._get_engine()
        fd, name = tempfile.mkstemp(suffix=".wav", prefix="voicebot-tts-")
        os.close(fd)
        path = Path(name)
        finished = threading.Event()
        token = engine.connect("finished-utterance", lambda **_: finished.set())
        try:
            engine.setProperty("voice", voice)
            engine.save_to_file(text, str(path))
            # The espeak driver prints the file name to stdout; keep server output clean.
            with contextlib.redirect_stdout(io.StringIO()):
                engine.runAndWait()
                if not finished.wait(_FINISH_TIMEOUT_S):
                    raise EngineError(f"espeak did not finish a prompt within {_FINISH_TIMEOUT_S} s")
            samples, rate = read_wav(path)
        except (RuntimeError, OSError, EOFError) as exc:
            raise EngineError(f"pyttsx3 failed to render a prompt: {exc!r}") from exc
        finally:
            engine.disconnect(token)
            path.unlink(missing_ok=True)
        if samples.size == 0:
            raise EngineError("pyttsx3 rendered no audio")
        return samples, rate
