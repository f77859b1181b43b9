"""pyttsx3 (espeak-ng driver on Linux) rendering to WAV, read back as samples.

Rendering runs in a child process of its own (one per server process, shared
by its synthesizers): espeak-ng has been seen to crash with a segmentation
fault inside `Synth`, which in-process would end every call the server holds.
A child that dies is replaced and the prompt rendered again there.

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
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        for attempt in range(_ATTEMPTS):
            pool = _renderer()
            try:
                return pool.submit(_synthesize, text, voice, self._rate_wpm).result()
            except BrokenProcessPool:
                _replace(pool)
                log.error("the speech synthesis process died; started another (attempt %d)", attempt + 1)
        raise EngineError(f"the speech synthesis process died {_ATTEMPTS} times on one prompt")


# --- the parent: one rendering process, replaced when it dies -------------------------
_POOL_LOCK = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _renderer() -> ProcessPoolExecutor:
    global _pool
    with _POOL_LOCK:
        if _pool is None:
            _pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _replace(broken: ProcessPoolExecutor) -> None:
    """Callers that shared the dead pool replace it once between them."""
    global _pool
    with _POOL_LOCK:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False)


# --- the child ----------------------------------------------------------------------
_engine: Any = None  # pyttsx3 has no type hints


def _synthesize(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int]:
    with _ENGINE_LOCK:
        for attempt in range(_ATTEMPTS):
            try:
                return _render(text, voice, rate_wpm)
            except EngineError as exc:
                if attempt == _ATTEMPTS - 1:
                    raise
                log.warning("pyttsx3 render failed (%s); trying again", exc)
                time.sleep(_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def _get_engine(rate_wpm: int) -> Any:
    global _engine
    if _engine is None:
        import pyttsx3

        try:
            _engine = pyttsx3.init()
        except (RuntimeError, OSError) as exc:
            raise EngineError(f"pyttsx3 could not start (is espeak-ng installed?): {exc}") from exc
    _engine.setProperty("rate", rate_wpm)
    return _engine


def _render(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int]:
    engine = _get_engine(rate_wpm)
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
