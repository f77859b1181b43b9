"""The async shell around a recogniser: a hung engine costs the call a handoff,
never an executor thread beyond the timeout, and leaves no task behind."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.asr.runner import AsrRunner
from voicebot.errors import EngineError
from voicebot.types import Transcript


class NeverAnswers:
    """A stream that answers through a future (as the worker pool's does), never resolved."""

    def __init__(self) -> None:
        self.future: Future[Transcript] = Future()
        self.fed = 0

    def accept(self, pcm: bytes) -> None:
        self.fed += len(pcm)

    def finish(self) -> Transcript:  # pragma: no cover - the runner must not call it
        raise AssertionError("finish() would hold a thread")

    def finish_later(self) -> Future[Transcript]:
        return self.future


class HungPool:
    name, language, sample_rate, description = "hung", "en", 16000, "a worker that stopped answering"

    def __init__(self) -> None:
        self.streams: list[NeverAnswers] = []

    def stream(self, context: str = "") -> NeverAnswers:
        self.streams.append(NeverAnswers())
        return self.streams[-1]


@pytest.fixture
def one_thread():
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-asr")
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


async def test_a_hung_stream_holds_no_thread_after_the_timeout(one_thread):
    engine = HungPool()
    runner = AsrRunner(engine, one_thread, timeout_s=0.2)
    recognition = runner.open()
    recognition.feed(b"\0\0" * 1600)
    with pytest.raises(EngineError, match="no result within 0.2 s"):
        await recognition.finish()
    assert engine.streams[0].future.cancelled()  # the stream was given up
    # the executor's only thread is free at once: a next utterance is recognised
    answered = AsrRunner(FakeEngine([Transcript("yes", 0.9)]), one_thread, timeout_s=5)
    next_one = answered.open()
    next_one.feed(b"\0\0" * 1600)
    async with asyncio.timeout(5):
        assert (await next_one.finish()).text == "yes"


async def test_an_abandoned_utterance_leaves_no_task(one_thread):
    runner = AsrRunner(FakeEngine(), one_thread)
    before = asyncio.all_tasks()
    recognition = runner.open()
    recognition.feed(b"\0\0" * 160)
    await recognition.aclose()
    assert asyncio.all_tasks() == before
