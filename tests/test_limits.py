"""Limits: concurrent calls, call length, idle media, message size. Every limit
ends with the caller reaching a human (or, before any call exists, a clear close)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from voicebot.app import REGISTRY
from voicebot.audio.wav import read_wav
from voicebot.dialog import policy as p
from voicebot.dialog.flow import DEFAULT_FLOW
from voicebot.dialog.flowcheck import load_checked
from voicebot.replay.client import ReplayOptions, replay
from voicebot.types import HandoffReason

from .conftest import FIXTURES

FAST = {"marks": "immediate", "speed": 0}


FLOW = load_checked(DEFAULT_FLOW)


def fixture(name: str) -> tuple[np.ndarray, int]:
    return read_wav(FIXTURES / name)


# --- the policy, without I/O --------------------------------------------------------
def _play(policy: p.Policy) -> list[p.Action]:
    prompt = policy.current_prompt
    assert prompt is not None
    return policy.step(p.PromptDone(prompt.prompt_id))


def test_hand_over_waits_for_the_disclosure_then_hands_off():
    policy = p.Policy(FLOW, "en")
    assert policy.start()[0].name == "disclosure"
    assert policy.step(p.HandOver(HandoffReason.OVER_CAPACITY)) == []
    assert [a.name for a in _play(policy)] == ["handoff"]  # straight to the handoff line
    assert _play(policy) == [p.Handoff(HandoffReason.OVER_CAPACITY, "")]


def test_hand_over_beats_a_held_person_request_and_keeps_a_handoff_under_way():
    policy = p.Policy(FLOW, "en")
    policy.start()
    policy.step(p.KeyPressed("0"))
    policy.step(p.HandOver(HandoffReason.SHUTDOWN))
    _play(policy)
    assert policy.handoff_reason is HandoffReason.SHUTDOWN
    busy = p.Policy(FLOW, "en")
    busy.start()
    _play(busy)  # menu playing
    busy.step(p.KeyPressed("0"))  # handoff line playing
    assert busy.step(p.HandOver(HandoffReason.SHUTDOWN)) == []
    assert _play(busy) == [p.Handoff(HandoffReason.CALLER_REQUEST, "main")]
    assert busy.step(p.HandOver(HandoffReason.SHUTDOWN)) == []  # done: nothing more


# --- through the real server ----------------------------------------------------------
async def _health(server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.http + "/healthz") as r:
        return await r.json()


async def _metrics(server) -> str:
    async with aiohttp.ClientSession() as http, http.get(server.http + "/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        return await r.text()


@pytest.mark.e2e
async def test_over_capacity_call_hears_disclosure_and_reaches_a_human(start_server, en_engine):
    server = await start_server(en_engine, max_calls=1)
    registry = server.app[REGISTRY]
    silence = np.zeros(8000, np.int16)
    first = asyncio.create_task(replay(server.ws + "/v1/stream", silence, 8000, ReplayOptions(
        marks="immediate", speed=1, hangup_at=4.0)))
    for _ in range(100):
        if registry.sessions:
            break
        await asyncio.sleep(0.02)
    samples, rate = fixture("en_human_person.wav")
    over = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(**FAST))
    assert over.outcome == "handoff:over_capacity"
    assert [e["name"] for e in over.of("prompt")] == ["disclosure", "handoff"]
    handoff = over.of("handoff")[0]
    assert handoff["reason"] == "over_capacity" and handoff["target"] == server.settings.human_line
    record = await server.record(over.call_id)
    assert record.outcome == "handoff" and record.handoff_reason == "over_capacity"
    assert record.disclosure_played_at is not None
    assert (await _health(server))["over_capacity"] == 1
    assert "voicebot_calls_over_capacity_total 1.0" in await _metrics(server)
    for _ in range(100):  # counted when the server's call task ends, just after the close
        if 'voicebot_handoffs_total{reason="over_capacity"} 1.0' in await _metrics(server):
            break
        await asyncio.sleep(0.02)
    assert 'voicebot_handoffs_total{reason="over_capacity"} 1.0' in await _metrics(server)

    assert (await first).outcome == "abandoned"  # the first caller hung up at 4 s
    normal = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(**FAST))
    assert normal.outcome == "handoff:caller_request"  # capacity is back
    assert (await _health(server))["over_capacity"] == 1


@pytest.mark.e2e
async def test_call_longer_than_the_limit_is_handed_over(start_server, en_engine):
    server = await start_server(en_engine, max_call_s=3.0, no_input_timeout_s=30.0)
    silence = np.zeros(8000, np.int16)
    result = await replay(server.ws + "/v1/stream", silence, 8000, ReplayOptions(
        marks="immediate", speed=1, max_call_s=20))
    assert result.outcome == "handoff:max_duration"
    handoff_at = result.of("handoff")[0]["t"]
    assert 3.0 <= handoff_at < 6.0, handoff_at
    record = await server.record(result.call_id)
    assert record.handoff_reason == "max_duration" and record.summary.endswith("time limit.")


@pytest.mark.e2e
async def test_gateway_that_stops_sending_audio_is_handed_over_then_closed(start_server, en_engine):
    server = await start_server(en_engine, idle_timeout_s=1.0)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws + "/v1/stream") as ws:
            await ws.receive(timeout=3)  # nothing sent at all: closed once the wait is over
        assert ws.close_code == 1008
        async with http.ws_connect(server.ws + "/v1/stream") as ws:
            await ws.send_str(json.dumps({"event": "start", "call_id": "quiet"}))
            events = await _events_until_close(ws, echo_marks=True)
    kinds = [e.get("event") for e in events]
    assert kinds[0] == "started" and "handoff" in kinds and kinds[-1] == "end"
    assert next(e for e in events if e.get("event") == "handoff")["reason"] == "media_timeout"
    assert ws.close_code == 1000
    assert (await server.record("quiet")).handoff_reason == "media_timeout"


@pytest.mark.e2e
async def test_oversized_messages_are_refused_with_a_reason(start_server, en_engine):
    server = await start_server(en_engine, max_message_bytes=4096)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws + "/v1/stream") as ws:
            await ws.send_str(json.dumps({"event": "start", "call_id": "big"}))
            await ws.send_bytes(b"\x00" * 5000)
            events = await _events_until_close(ws)
        error = next(e for e in events if e.get("event") == "error")
        assert error["reason"] == "message of 5000 bytes is over the limit of 4096"
        assert ws.close_code == 1009
        async with http.ws_connect(server.ws + "/twilio/media") as ws:
            await ws.send_str("x" * 20000)  # beyond what the reader takes in at all
            msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    record = await server.record("big")
    assert record.outcome == "abandoned" and record.ended_at is not None


async def _events_until_close(ws: aiohttp.ClientWebSocketResponse,
                              echo_marks: bool = False) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.TEXT:
            event = json.loads(msg.data)
            events.append(event)
            if echo_marks and event["event"] == "mark":
                await ws.send_str(msg.data)
        elif msg.type != aiohttp.WSMsgType.BINARY:
            return events
