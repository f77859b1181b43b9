"""The async shell around a blocking recogniser: one ordered worker per utterance.

Audio is queued without waiting; a worker task drains the queue into the
engine on a thread pool (batching whatever has piled up into one call), so the
event loop never blocks and chunks reach the engine in order. `finish()` is
bounded by a timeout: an engine that raises or hangs becomes an EngineError,
which the call session turns into a handoff to a human. A stream that can
answer without a thread (`finish_later()`, the worker pool's) is awaited
without one, so a hung engine holds no executor thread past the timeout.
`partial()` asks, in order with the audio, what has been heard so far (None
from an engine that cannot say, or too late to matter).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from voicebot.asr.base import RecognizerStream, SpeechEngine
from voicebot.errors import EngineError
from voicebot.types import Partial, Transcript

_END = b""
PARTIAL_TIMEOUT_S = 1.0


class _Probe:
    def __init__(self) -> None:
        self.answer: asyncio.Future[Partial | None] = asyncio.get_running_loop().create_future()


class AsrRunner:
    def __init__(self, engine: SpeechEngine, executor: Executor, timeout_s: float = 5.0) -> None:
        self.engine = engine
        self.executor = executor
        self.timeout_s = timeout_s

    def open(self, context: str = "") -> UtteranceRecognition:
        return UtteranceRecognition(self, context)


class UtteranceRecognition:
    def __init__(self, runner: AsrRunner, context: str = "") -> None:
        self._runner = runner
        self._context = context
        self._queue: asyncio.Queue[bytes | _Probe] = asyncio.Queue()
        self._task = asyncio.create_task(self._work(), name="asr-utterance")
        self._finishing = False

    def feed(self, pcm: bytes) -> None:
        if not self._finishing and pcm:
            self._queue.put_nowait(pcm)

    async def finish(self) -> Transcript:
        self._finishing = True
        self._queue.put_nowait(_END)
        try:
            return await asyncio.wait_for(asyncio.shield(self._task), self._runner.timeout_s)
        except TimeoutError:
            await self.aclose()
            raise EngineError(f"recogniser gave no result within {self._runner.timeout_s} s") from None

    async def partial(self) -> Partial | None:
        """What the engine has made of the audio fed so far; None when it cannot
        tell (no such engine method, an error, the utterance ended, a slow answer)."""
        if self._finishing or self._task.done():
            return None
        probe = _Probe()
        self._queue.put_nowait(probe)
        try:
            return await asyncio.wait_for(asyncio.shield(probe.answer), PARTIAL_TIMEOUT_S)
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        """Abandon the utterance: its worker task is cancelled and awaited."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _work(self) -> Transcript:
        loop = asyncio.get_running_loop()
        run = self._runner
        try:
            stream: RecognizerStream = await loop.run_in_executor(run.executor, run.engine.stream, self._context)
            while True:
                chunks = [await self._queue.get()]
                while not self._queue.empty() and not isinstance(chunks[-1], _Probe):
                    chunks.append(self._queue.get_nowait())
                last = chunks[-1]
                probe = last if isinstance(last, _Probe) else None
                if probe is not None:
                    chunks.pop()
                done = bool(chunks) and chunks[-1] == _END
                audio = b"".join(c for c in chunks if isinstance(c, bytes))
                if audio:
                    await loop.run_in_executor(run.executor, stream.accept, audio)
                if probe is not None:
                    await self._answer(probe, stream)
                if done:
                    return await _finish(stream, loop, run.executor)
        except asyncio.CancelledError:
            raise
        except EngineError:
            raise
        except Exception as exc:  # engines raise anything; it must become a handoff
            raise EngineError(f"{run.engine.name} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._unanswered()

    async def _answer(self, probe: _Probe, stream: RecognizerStream) -> None:
        method = getattr(stream, "partial", None)
        result: Partial | None = None
        if method is not None:
            try:
                result = await asyncio.get_running_loop().run_in_executor(self._runner.executor, method)
            except Exception:  # no opinion, not a failure: the turn just waits the full hangover
                result = None
        if not probe.answer.done():
            probe.answer.set_result(result)

    def _unanswered(self) -> None:
        """Probes still queued when the utterance ended get no opinion."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Probe) and not item.answer.done():
                item.answer.set_result(None)


async def _finish(stream: RecognizerStream, loop: asyncio.AbstractEventLoop, executor: Executor) -> Transcript:
    finish_later = getattr(stream, "finish_later", None)
    if finish_later is None:
        return await loop.run_in_executor(executor, stream.finish)
    # sending may block on a worker's full pipe: a thread sends, nothing waits on one
    future = await loop.run_in_executor(executor, finish_later)
    return await asyncio.wrap_future(future)  # cancelling it gives the stream up
