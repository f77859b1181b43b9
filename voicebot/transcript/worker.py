"""Transcript workers: blocking transcribers the service drives one job at a time.

`ProcessTranscriber` runs the engine in its own child process, separate from
the decision workers (voicebot.asr.workers) and lowered in priority
(`nice` +10), so when the cores are busy the scheduler serves the decisions
and the event loop first. A job slower than `timeout_s` kills the process
(it is restarted for the next job); a process that dies fails only its job.

Messages: parent → child ("jobs", [pcm, ...], prompt, [check, ...]) ("stop",);
child → parent ("ready", name, model, rate) | ("failed", key, message) once, then
("results", [(text, confidence, words, fit), ...], cpu_s) | ("error", message) per
message: one or several utterances with one prompt, which Whisper decodes as one
batch, each with the words it checks (Transcript.fit; "" for none).
`InlineTranscriber` calls an engine in the calling thread (fakes, benchmarks).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from voicebot.errors import ConfigError, EngineError
from voicebot.transcript.base import FreeFormEngine, transcribe_all
from voicebot.types import Transcript, Word

log = logging.getLogger("voicebot.transcript")
NICE = 10
_START_TIMEOUT_S = 120.0


class Transcriber(Protocol):
    name: str
    model: str
    sample_rate: int

    def transcribe(self, pcm: bytes, prompt: str = "") -> tuple[Transcript, float]:
        """Blocking: the utterance's transcript and the engine CPU seconds it took."""

    def transcribe_many(self, pcms: list[bytes], prompt: str = "",
                        checks: list[str] | None = None) -> tuple[list[Transcript], float]:
        """Blocking: several utterances' transcripts (one batch where the engine
        takes batches) and the engine CPU seconds they took together; `checks`:
        words per utterance whose fit to its audio the engine reports."""

    def close(self) -> None: ...


class InlineTranscriber:
    def __init__(self, engine: FreeFormEngine) -> None:
        self.engine = engine
        self.name, self.model, self.sample_rate = engine.name, engine.model, engine.sample_rate

    def transcribe(self, pcm: bytes, prompt: str = "") -> tuple[Transcript, float]:
        began = time.thread_time()
        result = self.engine.transcribe(pcm, prompt)
        return result, time.thread_time() - began

    def transcribe_many(self, pcms: list[bytes], prompt: str = "",
                        checks: list[str] | None = None) -> tuple[list[Transcript], float]:
        began = time.thread_time()
        results = transcribe_all(self.engine, pcms, prompt, checks)
        return results, time.thread_time() - began

    def close(self) -> None:
        pass


class ProcessTranscriber:
    def __init__(self, engine: str, model: str, language: str, models_dir: Path,
                 threads: int = 1, timeout_s: float = 60.0, nice: int = NICE,
                 beam_size: int = 5) -> None:
        self._args = [engine, model, language, str(models_dir), str(threads), str(nice), str(beam_size)]
        self.timeout_s = timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self.name, self.model, self.sample_rate = self._start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def transcribe(self, pcm: bytes, prompt: str = "") -> tuple[Transcript, float]:
        results, cpu_s = self.transcribe_many([pcm], prompt)
        return results[0], cpu_s

    def transcribe_many(self, pcms: list[bytes], prompt: str = "",
                        checks: list[str] | None = None) -> tuple[list[Transcript], float]:
        if self._conn is None:
            self._start()
        assert self._conn is not None
        try:
            self._conn.send(("jobs", pcms, prompt, checks or [""] * len(pcms)))
            if not self._conn.poll(self.timeout_s):
                self._kill()
                raise EngineError(f"transcript engine gave no result within {self.timeout_s} s")
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._kill()
            raise EngineError(f"transcript worker died: {type(exc).__name__}") from None
        if reply[0] == "error":
            raise EngineError(f"{self.name} failed: {reply[1]}")
        _, results, cpu_s = reply
        return [Transcript(text, confidence, tuple(Word(*w) for w in words), fit)
                for text, confidence, words, fit in results], cpu_s

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
        if self._process is not None:
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _start(self) -> tuple[str, str, int]:
        ours, theirs = socket.socketpair()
        args = [sys.executable, "-m", "voicebot.transcript.worker", str(theirs.fileno()), *self._args]
        process = subprocess.Popen(args, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        conn = Connection(ours.detach())
        try:
            hello: tuple[Any, ...] = (conn.recv() if conn.poll(_START_TIMEOUT_S)
                                      else ("failed", "", "did not start in time"))
        except (EOFError, OSError):
            hello = ("failed", "", f"exited with code {process.wait()}")
        if hello[0] != "ready":
            process.kill()
            process.wait()
            conn.close()
            if hello[1]:
                raise ConfigError(hello[1], hello[2])
            raise EngineError(f"transcript worker failed to load the engine: {hello[2]}")
        self._process, self._conn = process, conn
        return hello[1], hello[2], hello[3]

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            log.error("transcript worker %s stopped; restarting it for the next job",
                      self._process.pid)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None


def _serve(conn: Connection, engine_name: str, model: str, language: str, models_dir: str,
           threads: int, nice: int, beam_size: int) -> None:
    os.nice(nice)
    from voicebot.transcript.engines import load_free_engine

    try:
        engine = load_free_engine(engine_name, model, language, Path(models_dir), threads, beam_size)
    except ConfigError as exc:
        conn.send(("failed", exc.key, str(exc).split(": ", 1)[-1]))
        return
    except Exception as exc:
        conn.send(("failed", "", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", engine.name, engine.model, engine.sample_rate))
    inline = InlineTranscriber(engine)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        began = time.process_time()
        try:
            heard, _ = inline.transcribe_many(message[1], message[2], message[3])
        except Exception as exc:  # these utterances' failure, not the worker's
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        results = [(t.text, t.confidence, [(w.text, w.conf, w.start, w.end) for w in t.words], t.fit)
                   for t in heard]
        conn.send(("results", results, time.process_time() - began))

if __name__ == "__main__":
    fd, *rest = sys.argv[1:]
    _serve(Connection(int(fd)), rest[0], rest[1], rest[2], rest[3], int(rest[4]), int(rest[5]),
           int(rest[6]))
