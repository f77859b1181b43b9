"""Recognition in worker processes, so calls use every core.

pocketsphinx holds the GIL while it decodes (two threads decode no faster
than one, measured), so in-process threads serialise every call's recognition
and stall the event loop while they run. A WorkerPoolEngine runs N processes,
each with its own loaded engine, and implements the same SpeechEngine
interface: a stream is pinned to the least-busy worker, `accept()` sends audio
down that worker's pipe without waiting, `finish()` waits for the result.

The worker's first message from the parent is ("vocabulary", json, options): what the
flow listens for (voicebot.types.Vocabulary), so the ASR layer never reads
the flow itself, and {"decoder_sets": n}. Then (parent → worker): ("open", sid, context)
("accept", sid, pcm) ("partial", sid) ("finish", sid) ("drop", sid) ("ping", n) ("stop",).
Worker → parent: ("ready", name, rate, description), ("result", sid, text,
confidence, words), ("partial", sid, text, confidence, whole, decoded), ("pong", n) or
("error", sid, message). While it has no utterance open and nothing waits in
its pipe, a worker lets its engine build spare decoders (SphinxEngine.grow).

A worker that dies fails its open streams with EngineError (the call goes to a
human) and is replaced for the next stream. So does a worker that hangs (alive,
not answering): a watchdog pings every worker and kills one that has not
answered for `hang_after_s` while using no CPU (one that is decoding a backlog
gets up to three times as long: its calls' own timeouts already hand them
over); the parent's sends time out after as long, so no thread waits on a
full pipe forever.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from voicebot.asr.base import RecognizerStream
from voicebot.errors import ConfigError, EngineError
from voicebot.types import Partial, Transcript, Vocabulary, Word

log = logging.getLogger("voicebot.asr")
_START_TIMEOUT_S = 120.0
# A finish() still unanswered after this frees its thread; the runner's own,
# shorter timeout has long since handed the call to a human.
_FINISH_GIVE_UP_S = 60.0
_PARTIAL_GIVE_UP_S = 2.0  # a partial result later than this is of no use to end a turn
HANG_AFTER_S = 10.0  # a worker silent this long (no pong) is killed and replaced


def _serve(conn: Connection, model: str | None) -> None:
    """Worker process main loop: one engine, many interleaved streams."""
    from voicebot.asr.loader import load_engine

    try:
        kind, payload, *rest = conn.recv()
        if kind != "vocabulary":
            raise ValueError(f"expected the vocabulary first, got {kind!r}")
        options = rest[0] if rest else {}
        engine = load_engine(model, Vocabulary.from_json(json.loads(payload)),
                             decoder_sets=int(options.get("decoder_sets", 0)))
    except ConfigError as exc:  # reported to the parent, which raises it at start-up
        conn.send(("failed", exc.key, str(exc).split(": ", 1)[-1]))
        return
    except Exception as exc:
        conn.send(("failed", None, f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", engine.name, engine.sample_rate, engine.description))
    streams: dict[int, RecognizerStream] = {}
    errors: dict[int, str] = {}
    grow = getattr(engine, "grow", None)
    while True:
        if grow is not None and not streams and not conn.poll(0):
            grow = grow if grow() else None  # idle: one more spare decoder, then look again
            continue
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _handle(conn, engine, message, streams, errors)


def _handle(conn: Connection, engine: Any, message: tuple[Any, ...], streams: dict[int, RecognizerStream],
            errors: dict[int, str]) -> None:
    kind = message[0]
    sid: int = message[1]  # every message but "stop" names its stream (or a ping's number)
    try:
        if kind == "open":
            streams[sid] = engine.stream(message[2] if len(message) > 2 else "")
        elif kind == "accept" and sid in streams and sid not in errors:
            streams[sid].accept(message[2])
        elif kind == "partial":
            _reply_partial(conn, sid, streams.get(sid) if sid not in errors else None)
        elif kind == "finish":
            _reply_finish(conn, sid, streams.pop(sid, None), errors.pop(sid, None))
        elif kind == "drop":
            streams.pop(sid, None)
            errors.pop(sid, None)
        elif kind == "ping":
            conn.send(("pong", sid))
    except Exception as exc:  # engine failures belong to one stream, not the worker
        streams.pop(sid, None)
        if kind == "finish":
            conn.send(("error", sid, f"{type(exc).__name__}: {exc}"))
        else:
            errors[sid] = f"{type(exc).__name__}: {exc}"
            if kind == "partial":
                conn.send(("partial", sid, "", 0.0, False, False))


def _reply_partial(conn: Connection, sid: int, stream: RecognizerStream | None) -> None:
    probe = getattr(stream, "partial", None)
    p = probe() if probe is not None else Partial("", 0.0, False)
    conn.send(("partial", sid, p.text, p.confidence, p.whole, p.decoded))


def _reply_finish(conn: Connection, sid: int, stream: RecognizerStream | None, error: str | None) -> None:
    if error is not None or stream is None:
        conn.send(("error", sid, error or "unknown stream"))
        return
    try:
        t = stream.finish()
    except Exception as exc:
        conn.send(("error", sid, f"{type(exc).__name__}: {exc}"))
        return
    words = [(w.text, w.conf, w.start, w.end) for w in t.words]
    conn.send(("result", sid, t.text, t.confidence, words))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    info: tuple[str, int, str]  # engine name, sample rate, description
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    pending: dict[int, Future[Transcript]] = field(default_factory=dict)
    probes: dict[int, Future[Partial]] = field(default_factory=dict)
    open_streams: int = 0
    alive: bool = True
    pinged_at: float | None = None  # monotonic time of the ping not answered yet
    cpu_at_ping: float = 0.0  # the process's CPU seconds then

    def send(self, message: tuple[Any, ...]) -> None:
        if not self.alive:
            raise EngineError("speech worker process is gone")
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError) as exc:
            self.alive = False
            raise EngineError(f"speech worker process is gone: {exc}") from None


class WorkerPoolEngine:
    """A SpeechEngine whose streams run in `workers` child processes."""

    def __init__(self, model: str | None, vocabulary: Vocabulary, workers: int = 2, *,
                 decoder_sets: int = 0, hang_after_s: float = HANG_AFTER_S) -> None:
        self._model, self.language = model, vocabulary.language
        self._vocabulary = json.dumps(vocabulary.to_json())
        self._options = {"decoder_sets": decoder_sets}
        self._hang_after_s = hang_after_s
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._workers: list[_Worker] = []
        self._closing = False
        self._stop = threading.Event()
        for _ in range(max(1, workers)):
            self._workers.append(self._spawn())
        first = self._workers[0]
        self.name, self.sample_rate, description = first.info
        self.description = f"{description}; {len(self._workers)} worker processes"
        self.hung = 0  # workers killed for not answering
        threading.Thread(target=self._watch, name="asr-watchdog", daemon=True).start()

    def stream(self, context: str = "") -> RecognizerStream:
        with self._lock:
            for i, w in enumerate(self._workers):
                if not w.alive:
                    self._workers[i] = self._spawn()
            worker = min(self._workers, key=lambda w: w.open_streams)
            worker.open_streams += 1
            sid = next(self._ids)
        try:
            worker.send(("open", sid, context))
        except EngineError:
            self._closed(worker)
            raise
        return _PoolStream(self, worker, sid)  # only now: its __del__ gives the slot back

    def close(self) -> None:
        self._closing = True
        self._stop.set()
        for w in self._workers:
            with contextlib.suppress(EngineError):
                w.send(("stop",))
        for w in self._workers:
            try:
                w.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            w.conn.close()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def _closed(self, worker: _Worker) -> None:
        with self._lock:
            worker.open_streams -= 1

    def _spawn(self) -> _Worker:
        """Start `python -m voicebot.asr.workers` on one end of a socket pair (not
        multiprocessing: its spawn re-runs the parent's __main__, fork copies
        the parent's threads and locks)."""
        ours, theirs = socket.socketpair()
        # a send to a worker that stopped reading fails after this instead of waiting forever
        seconds = max(self._hang_after_s, 0.001)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(seconds), int(seconds % 1 * 1e6)))
        args = [sys.executable, "-m", "voicebot.asr.workers", str(theirs.fileno()), self._model or ""]
        process = subprocess.Popen(args, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        conn = Connection(ours.detach())
        try:
            conn.send(("vocabulary", self._vocabulary, self._options))
            if not conn.poll(_START_TIMEOUT_S):
                raise EngineError("speech worker did not start in time")
            hello = conn.recv()
        except (EOFError, OSError):
            hello = ("failed", None, f"worker exited with code {process.wait()}")
        except EngineError:
            process.kill()
            raise
        if hello[0] == "failed":
            process.wait()
            conn.close()
            if hello[1]:
                raise ConfigError(hello[1], hello[2])
            raise EngineError(f"speech worker failed to load the engine: {hello[2]}")
        worker = _Worker(process, conn, tuple(hello[1:]))
        threading.Thread(target=self._read, args=(worker,), name="asr-reader", daemon=True).start()
        return worker

    def _read(self, worker: _Worker) -> None:
        """Resolve each finish() future as the worker answers; fail them all if it dies."""
        while True:
            try:
                kind, sid, *rest = worker.conn.recv()
            except (EOFError, OSError):
                break
            if kind == "pong":
                worker.pinged_at = None
                continue
            if kind == "partial":
                probe = worker.probes.pop(sid, None)
                if probe is not None and not probe.done():
                    probe.set_result(Partial(*rest))
                continue
            future = worker.pending.pop(sid, None)
            if future is None or future.done():
                continue
            try:  # the caller may give the future up (cancel it) at any moment
                if kind == "result":
                    text, confidence, words = rest
                    future.set_result(Transcript(text, confidence, tuple(Word(*w) for w in words)))
                else:
                    future.set_exception(EngineError(f"{self.name} failed: {rest[0]}"))
            except InvalidStateError:
                pass
        worker.alive = False
        code = worker.process.poll()
        if not self._closing:
            log.error("speech worker %s exited (code %s); its open utterances go to a human",
                      worker.process.pid, code)
        waiting: list[Future[Any]] = [*worker.pending.values(), *worker.probes.values()]
        for each in waiting:
            with contextlib.suppress(InvalidStateError):  # given up meanwhile
                each.set_exception(EngineError("speech worker process died"))
        worker.pending.clear()
        worker.probes.clear()

    def _watch(self) -> None:
        """Ping every worker; kill one that stays silent (its reader then fails its streams)."""
        period = max(0.05, self._hang_after_s / 4)
        while not self._stop.wait(period):
            for worker in list(self._workers):
                self._check(worker, time.monotonic())

    def _check(self, worker: _Worker, now: float) -> None:
        if worker.alive and worker.pinged_at is None:
            worker.pinged_at, worker.cpu_at_ping = now, _cpu_seconds(worker.process.pid)
            with contextlib.suppress(EngineError):
                worker.send(("ping", 0))
            return
        silent = worker.pinged_at is not None and now - worker.pinged_at > self._hang_after_s
        if silent and worker.alive and _busy(worker, now - (worker.pinged_at or now), self._hang_after_s):
            return  # decoding a backlog, not hung: its calls' own timeouts cover them
        # not alive: also a send that timed out
        if (silent or not worker.alive) and worker.process.poll() is None and not self._closing:
            log.error("speech worker %s did not answer for %.1f s; killed, its open utterances "
                      "go to a human", worker.process.pid, self._hang_after_s)
            worker.alive = False
            self.hung += 1
            worker.process.kill()


def _busy(worker: _Worker, silent_s: float, hang_after_s: float) -> bool:
    """A silent worker that kept using CPU (over 5 % of a core) is busy, not
    hung, up to three times the hang limit; a frozen or blocked one uses none."""
    if silent_s > 3 * hang_after_s:
        return False
    return _cpu_seconds(worker.process.pid) - worker.cpu_at_ping > 0.05 * silent_s


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere: then
    only the ping decides)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _PoolStream:
    def __init__(self, engine: WorkerPoolEngine, worker: _Worker, sid: int) -> None:
        self._engine, self._worker, self._sid = engine, worker, sid
        self._done = False

    def accept(self, pcm: bytes) -> None:
        if pcm:
            self._worker.send(("accept", self._sid, pcm))

    def partial(self) -> Partial:
        if self._done:
            raise RuntimeError("partial() after finish()")
        future: Future[Partial] = Future()
        self._worker.probes[self._sid] = future
        try:
            self._worker.send(("partial", self._sid))
            return future.result(timeout=_PARTIAL_GIVE_UP_S)
        except TimeoutError:
            raise EngineError("speech worker gave no partial result") from None
        finally:
            self._worker.probes.pop(self._sid, None)

    def finish(self) -> Transcript:
        future = self.finish_later()
        try:
            return future.result(timeout=_FINISH_GIVE_UP_S)
        except TimeoutError:
            future.cancel()
            raise EngineError("speech worker gave no result") from None

    def finish_later(self) -> Future[Transcript]:
        """finish() without blocking a thread: the future the reader thread resolves.
        Cancelling it gives the stream up (the worker's late answer is dropped)."""
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        future: Future[Transcript] = Future()
        self._worker.pending[self._sid] = future
        future.add_done_callback(self._settled)
        try:
            self._worker.send(("finish", self._sid))
        except EngineError as exc:  # the worker is gone
            if not future.done():
                future.set_exception(exc)
        return future

    def _settled(self, _: Future[Transcript]) -> None:
        self._worker.pending.pop(self._sid, None)
        self._engine._closed(self._worker)

    def __del__(self) -> None:  # an abandoned utterance frees its worker-side stream
        if not self._done:
            self._done = True
            try:  # noqa: SIM105 - no contextlib.suppress in __del__: module globals may be gone at exit
                self._worker.send(("drop", self._sid))
            except Exception:
                pass
            self._engine._closed(self._worker)


def _main(argv: list[str]) -> None:
    fd, model = int(argv[0]), argv[1]
    _serve(Connection(fd), model or None)


if __name__ == "__main__":
    _main(sys.argv[1:])
