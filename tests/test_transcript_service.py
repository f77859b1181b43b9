"""The background free-form pass with a fake engine: what is queued when, the
bound on its queue, failures, and that nothing waits on it."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voicebot.events import HandoffDecided
from voicebot.transcript.base import FakeFreeFormEngine, FreeText
from voicebot.transcript.service import HISTORY_S, OFF, TranscriptService, transcripts_for
from voicebot.transcript.worker import InlineTranscriber
from voicebot.types import HandoffReason


class ListSink:
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[str, FreeText, bool]] = asyncio.Queue()

    async def deliver(self, call_id: str, text: FreeText, handed_over: bool) -> None:
        self.got.put_nowait((call_id, text, handed_over))

    async def next(self) -> tuple[str, FreeText, bool]:
        return await asyncio.wait_for(self.got.get(), 10)

    async def handed_over(self, call_id: str, texts: list[FreeText]) -> None:
        self.got.put_nowait((call_id, FreeText(-1, -1, "handed over: " + " | ".join(
            t.text for t in texts), 1.0), True))


class GatedEngine(FakeFreeFormEngine):
    """Blocks every transcription until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()

    def transcribe(self, pcm: bytes, prompt: str = ""):  # type: ignore[no-untyped-def]
        self.started.set()
        self.gate.wait(10)
        return super().transcribe(pcm, prompt)


def pcm(samples: int) -> bytes:
    return np.ones(samples, np.int16).tobytes()


def handoff(call_id: str) -> HandoffDecided:
    return HandoffDecided(call_id, HandoffReason.CALLER_REQUEST, "", "", "en", ())


@pytest.fixture
async def make_service():
    services: list[TranscriptService] = []

    def make(engine=None, mode: str = "all", queue_limit: int = 64):  # type: ignore[no-untyped-def]
        sink = ListSink()
        service = TranscriptService([InlineTranscriber(engine or FakeFreeFormEngine())], sink,
                                    mode, queue_limit)
        service.start()
        services.append(service)
        return service, sink

    yield make
    for service in services:
        await service.close()


async def test_all_mode_transcribes_each_utterance_with_its_call_time(make_service):
    engine = FakeFreeFormEngine({4800: "i would like to speak with an agent"})
    service, sink = make_service(engine)
    call = service.call("c1")
    call.feed(pcm(3000))
    call.feed(pcm(1800))  # arrives in pieces, transcribed whole
    call.ended(2.5, 2.8, "en", 16000)
    call_id, text, handed_over = await sink.next()
    assert (call_id, text.start, text.end, text.status) == ("c1", 2.5, 2.8, "ok")
    assert text.text == "i would like to speak with an agent" and not handed_over
    assert [w.text for w in text.words][:2] == ["i", "would"] and text.engine == "fake"
    assert text.to_json()["words"][0]["conf"] == 0.9
    assert service.counts["ok"] == 1


async def test_audio_at_another_rate_is_resampled_for_the_engine(make_service):
    engine = FakeFreeFormEngine(sample_rate=16000)
    service, sink = make_service(engine)
    call = service.call("c1")
    call.feed(pcm(8000))
    call.ended(0.0, 1.0, "en", 8000)
    await sink.next()
    assert engine.seen == [16000]


async def test_handoff_mode_waits_for_the_handoff_then_sends_the_whole_history(make_service):
    service, sink = make_service(mode="handoff")
    call = service.call("c1")
    for i, n in enumerate((1600, 3200)):
        call.feed(pcm(n))
        call.ended(float(i), i + 0.5, "en", 16000)
    other = service.call("c2")
    other.feed(pcm(800))
    other.ended(0.0, 0.1, "en", 16000)
    assert len(service.queue) == 0 and sink.got.empty(), "nothing is queued before a handoff"
    service.on_call_event(handoff("c1"))
    got = [await sink.next(), await sink.next()]
    assert [(t.start, t.text) for _, t, _ in got] == [(0.0, "heard 1600 samples"),
                                                      (1.0, "heard 3200 samples")]
    assert all(c == "c1" and over for c, _, over in got)
    call.feed(pcm(400))  # said after the handoff decision: transcribed at once
    call.ended(2.0, 2.1, "en", 16000)
    assert (await sink.next())[1].text == "heard 400 samples"
    other.close()
    call.close()
    service.on_call_event(handoff("c2"))  # too late: the call is over and kept nothing
    assert len(service.queue) == 0 and service.counts["ok"] == 3


async def test_handoff_mode_keeps_a_bounded_history(make_service):
    service, sink = make_service(mode="handoff")
    call = service.call("c1")
    third = int(HISTORY_S * 1000 / 3) + 1  # three utterances are more than HISTORY_S
    for i in range(3):
        call.feed(pcm(third))
        call.ended(float(i), i + 0.5, "en", 1000)
    _, skipped, _ = await sink.next()
    assert (skipped.start, skipped.status, skipped.extra["why"]) == (0.0, "skipped", "history_limit")
    service.on_call_event(handoff("c1"))
    assert [(await sink.next())[1].start for _ in range(2)] == [1.0, 2.0]


async def test_a_full_queue_skips_routine_work_and_makes_room_for_a_handoff(make_service):
    engine = GatedEngine()
    service, sink = make_service(engine, mode="all", queue_limit=2)
    busy = service.call("busy")
    busy.feed(pcm(100))
    busy.ended(0.0, 0.1, "en", 16000)  # taken by the worker, which blocks on the gate
    await asyncio.to_thread(engine.started.wait, 10)
    for i in range(3):  # two fit in the queue, the third is refused
        busy.feed(pcm(100))
        busy.ended(float(i + 1), i + 1.1, "en", 16000)
    _, refused, _ = await sink.next()
    assert (refused.start, refused.status, refused.extra["why"]) == (3.0, "skipped", "busy")
    urgent = service.call("urgent")
    service.on_call_event(handoff("urgent"))
    urgent.feed(pcm(200))
    urgent.ended(5.0, 5.2, "en", 16000)  # evicts the newest routine job, and goes first
    _, evicted, _ = await sink.next()
    assert (evicted.start, evicted.status) == (2.0, "skipped")
    engine.gate.set()
    order = [(await sink.next())[1] for _ in range(3)]
    assert [(t.start, t.status) for t in order] == [(0.0, "ok"), (5.0, "ok"), (1.0, "ok")]
    assert service.counts == {"ok": 3, "failed": 0, "skipped": 2}


async def test_an_engine_failure_marks_that_utterance_and_the_pass_goes_on(make_service):
    service, sink = make_service(FakeFreeFormEngine(fail=(100,)))
    call = service.call("c1")
    for i, n in enumerate((100, 200)):
        call.feed(pcm(n))
        call.ended(float(i), i + 0.1, "en", 16000)
    failed, fine = (await sink.next())[1], (await sink.next())[1]
    assert (failed.status, failed.text, failed.extra["why"]) == ("failed", "", "RuntimeError")
    assert (fine.status, fine.text) == ("ok", "heard 200 samples")


async def test_a_sink_failure_is_logged_and_the_pass_goes_on(make_service, caplog):
    service, sink = make_service()
    calls = 0
    real = sink.deliver

    async def flaky(call_id, text, handed_over):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        await real(call_id, text, handed_over)

    sink.deliver = flaky  # type: ignore[method-assign]
    call = service.call("c1")
    for i in range(2):
        call.feed(pcm(100 + i))
        call.ended(float(i), i + 0.1, "en", 16000)
    assert (await sink.next())[1].start == 1.0
    assert "delivering a free-form transcript failed" in caplog.text


async def test_off_takes_audio_and_keeps_nothing():
    call = transcripts_for(None, "c1")
    assert call is OFF
    call.feed(pcm(100))
    call.ended(0.0, 0.1, "en", 16000)
    call.hand_over()
    call.close()
    assert OFF._audio == [] and OFF._history == []


async def test_all_mode_tells_the_sink_what_was_transcribed_before_the_handoff(make_service):
    engine = GatedEngine()
    service, sink = make_service(engine, mode="all")
    call = service.call("c1")
    call.feed(pcm(100))
    call.ended(0.0, 0.1, "en", 16000)
    engine.gate.set()
    assert (await sink.next())[1].text == "heard 100 samples"
    engine.gate.clear()
    engine.started.clear()
    call.feed(pcm(200))
    call.ended(1.0, 1.1, "en", 16000)
    await asyncio.to_thread(engine.started.wait, 10)  # being transcribed as the handoff comes
    service.on_call_event(handoff("c1"))
    _, told, _ = await sink.next()
    assert told.text == "handed over: heard 100 samples"
    engine.gate.set()
    _, late, handed_over = await sink.next()
    assert late.text == "heard 200 samples" and handed_over, "finished after the handoff: counts as handed over"


async def test_speech_in_another_language_than_the_engines_is_marked_not_guessed(make_service):
    service, sink = make_service()  # loaded for English
    call = service.call("c1")
    call.feed(pcm(100))
    call.ended(0.0, 0.1, "ko", 16000)  # the caller switched the call to Korean
    _, text, _ = await sink.next()
    assert (text.status, text.extra["why"], text.text) == ("skipped", "language", "")


async def test_a_second_opinion_by_the_same_model_is_not_transcribed_again(make_service):
    """Handoff mode: the second opinion's words stand for the kept utterance; the
    handoff then announces them and transcribes only the others."""
    from voicebot.types import Transcript

    engine = FakeFreeFormEngine(model="whisper-tiny.en")
    service, sink = make_service(engine, mode="handoff")
    call = service.call("c1")
    for i, n in enumerate((1600, 3200)):
        call.feed(pcm(n))
        call.ended(float(i), i + 0.5, "en", 16000)
    call.heard(1.0, Transcript("put me through to a person", 0.8), "other-model")  # not ours: ignored
    call.heard(1.0, Transcript("put me through to a person", 0.8), "whisper-tiny.en")
    _, known, over = await sink.next()
    assert (known.start, known.end, known.text, known.extra, over) == (
        1.0, 1.5, "put me through to a person", {"by": "second_opinion"}, False)
    service.on_call_event(handoff("c1"))
    got = [await sink.next(), await sink.next()]
    assert {t.text for _, t, _ in got} == {"heard 1600 samples", "handed over: put me through to a person"}
    assert engine.seen == [1600]


async def test_a_waiting_job_is_withdrawn_for_a_second_opinion(make_service):
    from voicebot.types import Transcript

    engine = GatedEngine()
    service, sink = make_service(engine)
    call = service.call("c1")
    for i, n in enumerate((1600, 3200)):
        call.feed(pcm(n))
        call.ended(float(i), i + 0.5, "en", 16000)
    await asyncio.to_thread(engine.started.wait, 10)  # the first is running, the second waits
    call.heard(1.0, Transcript("agent please", 0.9), engine.model)
    call.heard(0.0, Transcript("too late", 0.9), engine.model)  # running: left to the pass
    assert (await sink.next())[1].text == "agent please"
    engine.gate.set()
    assert (await sink.next())[1].text == "heard 1600 samples"
    assert len(service.queue) == 0 and service.counts["ok"] == 2
