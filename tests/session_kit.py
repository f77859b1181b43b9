"""A CallSession on fakes: a scripted engine, an instant synthesiser, a media
channel and a store in memory. Real parts in between: the VAD, the resampler,
the ASR runner and its threads, the prompt cache, the dialog policy and flow.

    call = await start_call(engine=FakeEngine([Transcript("agent please", 0.9)]))
    await call.prompted("menu")      # the menu prompt has been sent
    call.speak()                     # a recorded utterance, then silence: one turn
    await call.ended()               # run() returned; the record is closed
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.asr.runner import AsrRunner
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.call.fake_channel import FakeChannel
from voicebot.call.lookup import LookupClient
from voicebot.call.recording import AudioRecorder
from voicebot.call.session import CallServices, CallSession
from voicebot.config import Settings
from voicebot.events import CallEventBus
from voicebot.flowrun import load_settings_flow
from voicebot.storage.base import CallRecord, CallStore
from voicebot.storage.fake import FakeCallStore
from voicebot.transcript.opinion import SecondOpinion
from voicebot.tts.fake import FakeSynthesizer
from voicebot.tts.prompts import PromptCache
from voicebot.types import HandoffReason

from .conftest import FIXTURES, ROOT

LINE_RATE = 8000
FRAME = LINE_RATE // 50  # 20 ms
ORDERS_FLOW = str(ROOT / "voicebot" / "flows" / "orders.toml")


@cache
def speech() -> np.ndarray:
    """A caller's words at the line rate (the VAD hears them as one utterance)."""
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    return resample(samples, rate, LINE_RATE)


def words() -> np.ndarray:
    """`speech()` without the silence around it (its speech: 1.0-2.75 s)."""
    return speech()[int(0.95 * LINE_RATE): int(2.8 * LINE_RATE)]


@dataclass
class Call:
    session: CallSession
    channel: FakeChannel
    store: Any
    engine: FakeEngine
    synth: FakeSynthesizer
    task: asyncio.Task[None]
    published: list[Any] = field(default_factory=list)

    async def prompted(self, name: str, *, after: int = 0) -> int:
        """Waits until the prompt `name` is sent; its index in channel.sent."""
        entry = await self.channel.wait_for(
            "event", lambda e: e.get("event") == "prompt" and e["name"] == name, after=after)
        return self.channel.sent.index(entry)

    def speak(self, *, silence_s: float = 1.5) -> None:
        """One utterance into the session as a gateway delivers it, faster than real time."""
        self.feed(speech())
        self.silence(silence_s)

    def silence(self, seconds: float) -> None:
        self.feed(np.zeros(int(seconds * LINE_RATE), np.int16))

    def feed(self, samples: np.ndarray) -> None:
        for offset in range(0, samples.size, FRAME):
            self.session.on_audio(samples[offset: offset + FRAME])

    async def ended(self, timeout: float = 20.0) -> CallRecord:
        """Waits for run() to return; the call's record as the store has it."""
        async with asyncio.timeout(timeout):
            await self.task
        record = await self.store.get(self.session.recorder.call_id)
        assert record is not None
        return record

    @property
    def handoff_reason(self) -> str:
        events = self.channel.events("handoff")
        return events[0]["reason"] if events else ""

    def of_kind(self, kind: str) -> list[Any]:
        return [e for e in self.published if e.kind == kind]


@dataclass
class Kit:
    executor: ThreadPoolExecutor
    calls: list[Call] = field(default_factory=list)

    async def start_call(self, engine: FakeEngine | None = None, *,
                         synth: FakeSynthesizer | None = None, store: CallStore | None = None,
                         channel: FakeChannel | None = None, lookups: LookupClient | None = None,
                         hand_over: HandoffReason | None = None, call_id: str = "c1",
                         recordings: AudioRecorder | None = None, opinion: SecondOpinion | None = None,
                         fallback: SecondOpinion | None = None, **settings: Any) -> Call:
        s = Settings(**{"db": ":memory:", **settings})
        engine = engine or FakeEngine()
        synth = synth or FakeSynthesizer()
        store = store if store is not None else FakeCallStore()
        channel = channel or FakeChannel(LINE_RATE)
        services = CallServices(
            s, AsrRunner(engine, self.executor, s.asr_timeout_s), PromptCache(synth), store,
            load_settings_flow(s), CallEventBus(), lookups=lookups, recordings=recordings, opinion=opinion,
            fallback=fallback)
        published: list[Any] = []
        services.events.subscribe(published.append)
        record = CallRecord(call_id, "native", caller="+15550123", language=s.language)
        session = CallSession(record, channel, services, hand_over=hand_over)
        channel.on_mark = session.on_mark
        task = asyncio.create_task(session.run(), name=f"test-call-{call_id}")
        call = Call(session, channel, store, engine, synth, task, published)
        self.calls.append(call)
        return call

    async def close(self) -> None:
        for call in self.calls:
            call.engine.release()
            if not call.task.done():
                call.session.on_hangup()
            await asyncio.gather(call.task, return_exceptions=True)
            call.session.services.prompts.close()
        self.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
async def kit():
    """A Kit whose calls are all closed when the test ends (conftest makes it every test's)."""
    kit = Kit(ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-asr"))
    yield kit
    await kit.close()
