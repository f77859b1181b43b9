"""A scripted speech engine for tests of the other stages (runner, session, server).

    FakeEngine([Transcript("agent please", 0.9)])          # one result per utterance, in order
    FakeEngine(lambda audio: Transcript("yes", 0.8))        # result computed from the audio bytes
    FakeEngine(error=RuntimeError("boom"))                   # finish() raises
    FakeEngine(error=RuntimeError("boom"), fail_in="accept") # accept() raises
    FakeEngine(delay_s=30)                                   # finish() hangs (until release())
    FakeEngine(partial=lambda audio: Partial("yes", 0.9, True))  # what partial() says mid-utterance

`received` lists, per stream in creation order, how many bytes it was fed;
`finished` counts the streams whose finish() returned. Thread-safe like the
real engines: streams may be created and driven from any worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from voicebot.types import Partial, Transcript

Script = Sequence[Transcript] | Callable[[bytes], Transcript]
PartialScript = Callable[[bytes], Partial]


class FakeEngine:
    name = "fake"

    def __init__(self, results: Script = (), *, error: BaseException | None = None,
                 fail_in: str = "finish", delay_s: float = 0.0, language: str = "en",
                 sample_rate: int = 16000, partial: PartialScript | None = None) -> None:
        if fail_in not in ("accept", "finish", "stream"):
            raise ValueError("fail_in is 'accept', 'finish' or 'stream'")
        self.language = language
        self.sample_rate = sample_rate
        self.description = "fake speech engine (tests)"
        self._script = results
        self._partial = partial
        self.partials = 0  # partial() calls answered
        self._next = 0
        self.error = error
        self.fail_in = fail_in
        self.delay_s = delay_s
        self.received: list[int] = []
        self.contexts: list[str] = []  # the context each stream was opened for
        self.finished = 0
        self._lock = threading.Lock()
        self._released = threading.Event()

    def stream(self, context: str = "") -> FakeStream:
        if self.error is not None and self.fail_in == "stream":
            raise self.error
        with self._lock:
            self.received.append(0)
            self.contexts.append(context)
            return FakeStream(self, len(self.received) - 1)

    def release(self) -> None:
        """Let every finish() that is sleeping out `delay_s` return now."""
        self._released.set()

    def _result(self, audio: bytes) -> Transcript:
        if callable(self._script):
            return self._script(audio)
        with self._lock:
            if self._next >= len(self._script):
                return Transcript("", 0.0)  # script exhausted: nothing heard
            result = self._script[self._next]
            self._next += 1
            return result

    def _count(self, index: int, n: int) -> None:
        with self._lock:
            self.received[index] += n


class FakeStream:
    def __init__(self, engine: FakeEngine, index: int) -> None:
        self._engine = engine
        self._index = index
        self._audio = bytearray()

    def accept(self, pcm: bytes) -> None:
        engine = self._engine
        if engine.error is not None and engine.fail_in == "accept":
            raise engine.error
        self._audio += pcm
        engine._count(self._index, len(pcm))

    def partial(self) -> Partial:
        engine = self._engine
        with engine._lock:
            engine.partials += 1
        return engine._partial(bytes(self._audio)) if engine._partial else Partial("", 0.0, False)

    def finish(self) -> Transcript:
        engine = self._engine
        if engine.delay_s > 0:
            engine._released.wait(engine.delay_s)
        if engine.error is not None and engine.fail_in == "finish":
            raise engine.error
        result = engine._result(bytes(self._audio))
        with engine._lock:
            engine.finished += 1
        return result
