"""Who may reach what: Twilio signatures, the native stream token, the staff API
token, request size limits, and no caller data or secrets in the logs."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.signing import twilio_signature

from .conftest import FIXTURES, STAFF_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.engine, pytest.mark.security]

TW_TOKEN, GW_TOKEN = "tw-secret-0123456789", "gw-secret-0123456789"
PUBLIC = "https://bot.example.com"
CALLER = "+15557654321"
FAST = {"marks": "immediate", "speed": 0, "max_call_s": 30}


async def post(http: aiohttp.ClientSession, url: str, form: dict[str, str],
               signature: str | None) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": signature} if signature else {}
    async with http.post(url, data=form, headers=headers) as r:
        return r.status, await r.text()


async def test_twilio_signatures_bind_url_and_parameters(start_server, en_engine):
    server = await start_server(en_engine, twilio_auth_token=TW_TOKEN, public_url=PUBLIC)
    form = {"CallSid": "CA77", "From": CALLER, "To": "+15550100"}
    ended = PUBLIC + "/twilio/stream-ended"
    async with aiohttp.ClientSession() as http:
        good = twilio_signature(TW_TOKEN, ended, form)
        assert (await post(http, server.http + "/twilio/stream-ended", form, good))[0] == 200
        cases = {
            "missing": None, "invalid": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "replayed to another URL": twilio_signature(TW_TOKEN, PUBLIC + "/twilio/voice", form),
            "another host": twilio_signature(TW_TOKEN, "https://evil.example.com/twilio/stream-ended", form),
            "other token": twilio_signature("not-the-token", ended, form),
            "parameter changed": twilio_signature(TW_TOKEN, ended, {**form, "From": "+15550000"}),
        }
        for name, signature in cases.items():
            status, _ = await post(http, server.http + "/twilio/stream-ended", form, signature)
            assert status == 403, name
        query_sig = twilio_signature(TW_TOKEN, PUBLIC + "/twilio/voice?x=1", form)
        status, _ = await post(http, server.http + "/twilio/voice?x=2", form, query_sig)
        assert status == 403, "the query string is signed too"
        media_url = PUBLIC.replace("https", "wss") + "/twilio/media"
        for signature in (None, twilio_signature(TW_TOKEN, PUBLIC + "/twilio/voice"),
                          twilio_signature(TW_TOKEN, media_url + "?replayed=1")):
            headers = {"X-Twilio-Signature": signature} if signature else {}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(server.ws + "/twilio/media", headers=headers)
            assert refused.value.status == 403
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/twilio/media", samples, rate, ReplayOptions(
        protocol="twilio", twilio_auth_token=TW_TOKEN, public_url=PUBLIC, **FAST))
    assert result.outcome == "handoff:caller_request"


async def test_native_stream_token(start_server, en_engine):
    server = await start_server(en_engine, stream_token=GW_TOKEN)
    async with aiohttp.ClientSession() as http:
        for header in (None, "Bearer wrong", f"Basic {GW_TOKEN}", f"Bearer {GW_TOKEN}x",
                       f"bearer {GW_TOKEN}", GW_TOKEN):
            headers = {"Authorization": header} if header else {}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(server.ws + "/v1/stream", headers=headers)
            assert refused.value.status == 401, header
            assert refused.value.headers.get("WWW-Authenticate") == "Bearer"
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        headers={"Authorization": f"Bearer {GW_TOKEN}"}, **FAST))
    assert result.outcome == "handoff:caller_request"


async def test_staff_api_needs_a_staff_token(start_server, en_engine):
    """Only the /api/calls token check; roles are covered by tests/test_staff_api.py."""
    server = await start_server(en_engine)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(**FAST))
    path = f"/api/calls/{result.call_id}"
    assert (await server.api(path, token=None))[0] == 401
    assert (await server.api(path, token="wrong"))[0] == 401
    assert (await server.api(path, token=GW_TOKEN))[0] == 401  # another edge's token
    assert (await server.api(path))[0] == 200
    unset = await start_server(en_engine, staff_token="")
    assert (await unset.api(path))[0] == 401  # no bootstrap token configured: it opens nothing


async def test_http_request_bodies_are_capped(start_server, en_engine):
    server = await start_server(en_engine, max_request_bytes=2048)
    async with aiohttp.ClientSession() as http:
        form = {"CallSid": "CA1", "From": CALLER}
        status, _ = await post(http, server.http + "/twilio/voice", form, None)
        assert status == 200
        status, _ = await post(http, server.http + "/twilio/voice",
                               {**form, "CallerName": "x" * 4096}, None)
        assert status == 413
        async with http.get(server.http + "/healthz") as r:
            assert r.status == 200  # the server is unaffected


async def test_logs_carry_no_caller_data_or_secrets(start_server, en_engine, caplog):
    caplog.set_level(logging.DEBUG)
    server = await start_server(en_engine, stream_token=GW_TOKEN, twilio_auth_token=TW_TOKEN,
                                public_url=PUBLIC)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    native = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        caller=CALLER, headers={"Authorization": f"Bearer {GW_TOKEN}"}, dtmf=[(0.1, "7")], **FAST))
    twilio = await replay(server.ws + "/twilio/media", samples, rate, ReplayOptions(
        protocol="twilio", caller=CALLER, twilio_auth_token=TW_TOKEN, public_url=PUBLIC, **FAST))
    media_sig = twilio_signature(TW_TOKEN, "wss://bot.example.com/twilio/media")
    form = {"CallSid": twilio.call_id, "From": CALLER, "CallStatus": "in-progress",
            "DialCallStatus": "busy"}
    async with aiohttp.ClientSession() as http:
        for path in ("/twilio/voice", "/twilio/stream-ended", "/twilio/dial-ended"):
            sig = twilio_signature(TW_TOKEN, PUBLIC + path, form)
            assert (await post(http, server.http + path, form, sig))[0] == 200
        async with http.ws_connect(server.ws + "/v1/stream",
                                   headers={"Authorization": f"Bearer {GW_TOKEN}"}) as ws:
            await ws.send_str(json.dumps({"event": "start", "caller": CALLER}))
            await ws.send_str(json.dumps({"event": "dtmf", "digit": "7"}))
            await ws.send_bytes(b"\x00")  # a protocol error mid-call
            await ws.receive()
    status, record = await server.api(f"/api/calls/{native.call_id}")
    assert status == 200 and record["caller"] == CALLER  # the data exists, stored ...
    speech = [u for u in record["utterances"] if u["source"] == "speech"]
    assert speech[-1]["text"] == "i want to speak to a person"  # (a keyed "1" may follow: the confirmation)
    logged = "\n".join(r.getMessage() + " " + repr(r.args) for r in caplog.records)
    assert "handed off" in logged and len(caplog.records) >= 5  # the logs were captured
    for secret in (CALLER, CALLER[2:], "speak to a person", TW_TOKEN, GW_TOKEN, STAFF_TOKEN,
                   media_sig, record["summary"]):
        assert secret not in logged, f"{secret!r} appears in the logs"  # ... but never logged
