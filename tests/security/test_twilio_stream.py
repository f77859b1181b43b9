"""Finding 1: a captured media-stream signature opened any number of streams,
with any callSid and caller, and a forged callSid could hide another call's
record. Each stream now needs the per-call token from its signed webhook's
TwiML, a callSid is refused once used, and a call id lookup is unambiguous."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from voicebot.app import REGISTRY
from voicebot.audio.wav import read_wav
from voicebot.errors import ProtocolError
from voicebot.replay.client import ReplayOptions, replay, twilio_webhook
from voicebot.signing import twilio_signature
from voicebot.storage.base import CallRecord
from voicebot.telephony.stream_token import StreamTokens

from ..conftest import FIXTURES, STAFF_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.security]

TW, PUBLIC = "tw-secret-0123456789", "https://bot.example.com"
CAPTURED = {"X-Twilio-Signature": twilio_signature(TW, "wss://bot.example.com/twilio/media")}
FAST = {"marks": "immediate", "speed": 0, "max_call_s": 30}


def start(call_sid: str, parameters: dict[str, str]) -> str:
    return json.dumps({"event": "start", "streamSid": "MZ" + call_sid, "start": {
        "streamSid": "MZ" + call_sid, "callSid": call_sid, "customParameters": parameters,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


async def open_stream(server, call_sid: str, parameters: dict[str, str]) -> tuple[str, Any]:
    """A stream opened with a valid (captured) upgrade signature: ("audio", None)
    when the bot starts talking, else ("closed", (code, reason))."""
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws + "/twilio/media", headers=CAPTURED) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
            await ws.send_str(start(call_sid, parameters))
            msg = await ws.receive(timeout=15)
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["event"] == "media":
                return "audio", None
            return "closed", (msg.data, msg.extra)


async def webhook_parameters(server, call_sid: str, caller: str = "+15550123") -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        parameters, _ = await twilio_webhook(http, server.ws + "/twilio/media", ReplayOptions(
            caller=caller, twilio_auth_token=TW, public_url=PUBLIC), call_sid)
    return parameters


async def test_each_stream_needs_its_own_webhook_token_once(start_server, en_engine):
    server = await start_server(en_engine, twilio_auth_token=TW, public_url=PUBLIC)
    assert await open_stream(server, "CA-forged-1", {"caller": "+15550000"}) == (
        "closed", (1008, "start: missing stream token (customParameters.token)"))
    genuine = await webhook_parameters(server, "CA-genuine")
    assert set(genuine) == {"caller", "token"}
    for call_sid, parameters in (("CA-forged-2", genuine),  # another call's token
                                 ("CA-genuine", {**genuine, "caller": "+15550000"})):
        assert await open_stream(server, call_sid, parameters) == (
            "closed", (1008, "start: stream token was not issued for this call"))
    assert await open_stream(server, "CA-genuine", genuine) == ("audio", None)
    assert await open_stream(server, "CA-genuine", genuine) == (
        "closed", (1008, "start: stream token was already used"))
    for forged in ("CA-forged-1", "CA-forged-2"):
        assert await server.record(forged) is None
    status, transfers = await server.api("/api/transfers")
    assert status == 200 and transfers["transfers"] == []  # no forged call reached the desk


def test_stream_tokens_expire_and_are_bound_to_the_auth_token():
    now = [1000.0]
    tokens = StreamTokens(TW, ttl_s=60, clock=lambda: now[0])
    token = tokens.issue("CA1", "+15550123")
    with pytest.raises(ProtocolError, match="not issued"):
        StreamTokens("another-auth-token").redeem(token, "CA1", "+15550123")
    for bad in ("", "x", "1.2", f"{'9' * 20}.n.m", token.replace(".", "!", 1)):
        with pytest.raises(ProtocolError):
            tokens.redeem(bad, "CA1", "+15550123")
    now[0] += 60
    with pytest.raises(ProtocolError, match="expired"):
        tokens.redeem(token, "CA1", "+15550123")
    now[0] -= 1
    tokens.redeem(token, "CA1", "+15550123")


async def test_a_used_call_id_is_refused_as_a_twilio_callsid(start_server, en_engine):
    server = await start_server(en_engine)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    native = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(call_id="victim-1", **FAST))
    assert native.outcome == "handoff:caller_request"
    twilio = await replay(server.ws + "/twilio/media", samples, rate,
                          ReplayOptions(protocol="twilio", **FAST))
    assert twilio.outcome == "handoff:caller_request"
    for used in ("victim-1", twilio.call_id):  # a native call id, an earlier CallSid
        again = await replay(server.ws + "/twilio/media", samples, rate, ReplayOptions(
            protocol="twilio", call_id=used, caller="+15550000", **FAST))
        assert (again.close_code, again.close_reason) == (
            1008, "start: this callSid was already used")
    status, record = await server.api("/api/calls/victim-1")
    assert status == 200 and record["gateway"] == "native" and record["caller"] == "+15550123"


async def test_a_call_id_lookup_never_returns_another_calls_record(start_server, en_engine):
    """Records left by the old code, where a forged CallSid equal to a native call
    id was stored later: the lookup finds the call that has the id as its own."""
    server = await start_server(en_engine)
    store = server.app[REGISTRY].services.store
    await store.create(CallRecord("victim-2", "native", caller="+15550123",
                                  started_at=time.time() - 60))
    await store.create(CallRecord("f0rged", "twilio", gateway_call_id="victim-2",
                                  caller="+15550000", started_at=time.time()))
    status, record = await server.api("/api/calls/victim-2")
    assert status == 200 and record["call_id"] == "victim-2" and record["gateway"] == "native"
    headers = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http + "/api/calls/f0rged", headers=headers) as r:
            assert (await r.json())["gateway_call_id"] == "victim-2"
