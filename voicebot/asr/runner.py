"""The async shell around a blocking recogniser: one ordered worker per utterance.

Audio is queued without waiting; a worker task drains the queue into the
engine on a thread pool (batching whatever has piled up into one call), so the
event loop never blocks and chunks reach the engine in order. `finish()` is
bounded by a timeout: an engine that raises or hangs becomes an EngineError,
which the call session turns into a handoff to a human. A stream that can
answer without a thread (`finish_later()`, the worker pool's) is awaited
without one, so a hung engine holds no executor thread past the timeout.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from voicebot.asr.base import RecognizerStream, SpeechEngine
from voicebot.errors import EngineError
from voicebot.types import Transcript

_END = b""


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
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
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
                while not self._queue.empty():
                    chunks.append(self._queue.get_nowait())
                done = chunks[-1] == _END
                audio = b"".join(chunks)
                if audio:
                    await loop.run_in_executor(run.executor, stream.accept, audio)
                if done:
                    return await _finish(stream, loop, run.executor)
        except asyncio.CancelledError:
            raise
        except EngineError:
            raise
        except Exception as exc:  # engines raise anything; it must become a handoff
            raise EngineError(f"{run.engine.name} failed: {type(exc).__name__}: {exc}") from exc


async def _finish(stream: RecognizerStream, loop: asyncio.AbstractEventLoop, executor: Executor) -> Transcript:
    finish_later = getattr(stream, "finish_later", None)
    if finish_later is None:
        return await loop.run_in_executor(executor, stream.finish)
    # sending may block on a worker's full pipe: a thread sends, nothing waits on one
    future = await loop.run_in_executor(executor, finish_later)
    return await asyncio.wrap_future(future)  # cancelling it gives the stream up
