"""`GET /metrics`: the series an operator alerts on, scraped from a real server
after real calls; the observer's arithmetic with controlled times."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voicebot.audio.wav import read_wav
from voicebot.events import CallAudio, CallEnded, CallError, SpeechEndDetected
from voicebot.metrics import Metrics
from voicebot.ops.observer import CallObserver
from voicebot.replay.client import ReplayOptions, replay
from voicebot.storage.base import CallRecord
from voicebot.types import Source, Utterance

from .conftest import FIXTURES, STAFF_TOKEN


class _MemoryStore:
    def __init__(self) -> None:
        self.writes: list[tuple[str, object]] = []

    async def create(self, record: CallRecord) -> None:
        self.writes.append(("create", record.call_id))

    async def update(self, call_id: str, **fields: object) -> None:
        self.writes.append(("update", fields))

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        self.writes.append(("utterance", utterance.text))

    async def add_prompt(self, call_id: str, at: float, prompt: dict) -> None:
        self.writes.append(("prompt", prompt["name"]))

    async def get(self, call_id: str) -> None:
        return None


def _speech(text: str, conf: float, start: float, end: float) -> Utterance:
    return Utterance(text, conf, start, end, Source.SPEECH)


async def test_observer_times_recognition_and_response_and_passes_writes_on():
    metrics = Metrics()
    observer = CallObserver(metrics)
    inner = _MemoryStore()
    store = observer.observe(inner)
    await store.create(CallRecord("c1", "native", language="ko"))
    await store.update("c1", disclosure_started_at=100.0)
    await store.update("c1", disclosure_played_at=106.0, disclosure_confirmed_by="mark")
    observer.on_call_event(SpeechEndDetected("c1", at=103.0))  # over the disclosure: not timed
    await store.add_utterance("c1", 103.2, _speech("hello", 0.5, 1.0, 2.0))
    await store.add_prompt("c1", 106.0, {"name": "disclosure", "started_at": 100.0,
                                         "finished_at": 106.0})
    observer.on_call_event(SpeechEndDetected("c1", at=110.0, silence_s=0.2))
    await store.add_utterance("c1", 110.4, _speech("agent please", 0.9, 3.0, 4.5))
    await store.add_utterance("c1", 110.5, Utterance("0", 1.0, 5.0, 5.0, Source.DTMF))
    await store.add_prompt("c1", 112.0, {"name": "handoff", "started_at": 110.7})
    await store.add_prompt("c1", 113.0, {"name": "menu", "started_at": 112.5})  # answers nothing
    observer.on_call_event(CallError("c1", "prompt"))
    observer.on_call_event(CallAudio("c1", 10.0))
    observer.on_call_event(CallEnded("c1", "handoff"))

    assert [w[0] for w in inner.writes] == ["create", "update", "update", "utterance", "prompt",
                                            "utterance", "utterance", "prompt", "prompt"]
    assert await store.get("c1") is None  # reads reach the real store
    s = metrics.sample
    assert s("voicebot_disclosures_played_total") == 1
    assert s("voicebot_disclosures_confirmed_total", by="mark") == 1
    assert s("voicebot_utterance_confidence_count", language="ko") == 2  # DTMF is not speech
    assert s("voicebot_recognition_seconds_count") == 2
    assert s("voicebot_recognition_seconds_sum") == pytest.approx(0.6)
    assert s("voicebot_response_seconds_count") == 1
    assert s("voicebot_response_seconds_sum") == pytest.approx(0.7)
    assert s("voicebot_vad_speech_ratio_sum") == pytest.approx(0.25)
    assert s("voicebot_turn_end_silence_seconds_count") == 1  # the one that waited (0: hung up, cut)
    assert s("voicebot_turn_end_silence_seconds_bucket", le="0.25") == 1
    assert s("voicebot_errors_total", kind="prompt") == 1
    assert s("voicebot_calls_ended_total", outcome="handoff") == 1


async def test_a_broken_observer_never_loses_a_write():
    observer = CallObserver(Metrics())
    inner = _MemoryStore()
    store = observer.observe(inner)
    await store.add_prompt("c1", 1.0, {"name": "menu", "started_at": "not a time"})
    assert inner.writes == [("prompt", "menu")]


# --- through the real server --------------------------------------------------------
async def _scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(server.http + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.e2e
@pytest.mark.engine
async def test_metrics_after_a_real_call(start_server, en_engine):
    server = await start_server(en_engine)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    # real-time audio, marks echoed at once: the disclosure has played long before the
    # caller's request ends, so the handoff line is timed as its answer
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(max_call_s=60, marks="immediate", speed=1, confirm="yes"))
    assert result.outcome == "handoff:caller_request"
    for _ in range(200):  # the call's last writes land just after the socket closes
        scraped = await _scrape(server)
        if _value(scraped, "voicebot_calls_ended_total", outcome="handoff"):
            break
        await asyncio.sleep(0.05)
    m = scraped
    assert _value(m, "voicebot_calls_total", gateway="native", language="en") == 1
    assert _value(m, "voicebot_handoffs_total", reason="caller_request") == 1
    assert _value(m, "voicebot_disclosures_played_total") == 1
    assert _value(m, "voicebot_disclosures_confirmed_total", by="mark") == 1
    assert _value(m, "voicebot_utterance_confidence_count", language="en") >= 1
    assert _value(m, "voicebot_utterance_confidence_sum", language="en") > 0.3  # heard, not guessed
    assert _value(m, "voicebot_recognition_seconds_count") >= 1
    assert _value(m, "voicebot_response_seconds_count") >= 1  # the handoff line answered
    assert 0 < _value(m, "voicebot_response_seconds_sum") < 30
    assert _value(m, "voicebot_vad_speech_ratio_count") == 1
    assert 0 < _value(m, "voicebot_vad_speech_ratio_sum") < 1
    # "I want to speak to a person" is a whole expected phrase: the turn ends at its first
    # pause (200 ms), or after the 500 ms hangover where the grammar's partial result came
    # unsure or late on a loaded machine (turn-taking itself: tests/test_turns.py, tests/test_turns_e2e.py)
    assert _value(m, "voicebot_turn_end_silence_seconds_count") == 1
    assert 0.15 <= _value(m, "voicebot_turn_end_silence_seconds_sum") <= 0.6
    assert _value(m, "voicebot_turn_end_silence_seconds_bucket", le="0.55") == 1
    assert _value(m, "voicebot_engine_info", engine=en_engine.name, model="embedded",
                  language="en") == 1
    assert _value(m, "voicebot_desk_queue_length", status="waiting") == 1
    assert _value(m, "voicebot_desk_oldest_wait_seconds") > 0
    assert _value(m, "voicebot_errors_total", kind="recognition") == 0

    async with aiohttp.ClientSession() as http, http.post(
            server.http + f"/api/transfers/{result.call_id}/claim",
            headers={"Authorization": f"Bearer {STAFF_TOKEN}"}) as r:
        assert r.status == 200
    m = await _scrape(server)
    assert _value(m, "voicebot_desk_queue_length", status="waiting") == 0
    assert _value(m, "voicebot_desk_wait_seconds_count") == 1
    assert _value((await _scrape(server)), "voicebot_desk_wait_seconds_count") == 1  # once


@pytest.mark.e2e
async def test_recognition_failure_is_counted_by_kind(start_server):
    from voicebot.asr.fake import FakeEngine

    server = await start_server(FakeEngine(error=RuntimeError("engine died")))
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(max_call_s=60, marks="immediate", speed=0))
    assert result.outcome == "handoff:system_error"
    for _ in range(200):
        scraped = await _scrape(server)
        if _value(scraped, "voicebot_handoffs_total", reason="system_error"):
            break  # counted as the call ends, after the error
        await asyncio.sleep(0.05)
    assert _value(scraped, "voicebot_errors_total", kind="recognition") == 1
    assert _value(scraped, "voicebot_handoffs_total", reason="system_error") == 1
