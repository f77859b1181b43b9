"""Findings 4-7 and 10 through a real server: re-split Twilio signatures, input
that gave a 500 with a traceback, install paths on /healthz, security headers
on every response, and ids that could forge log lines."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.signing import twilio_signature

from ..conftest import STAFF_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.security]
TW, PUBLIC = "tw-secret-0123456789", "https://bot.example.com"
ADMIN = {"Authorization": f"Bearer {STAFF_TOKEN}"}


async def test_a_re_split_twilio_signature_is_refused(start_server, en_engine):
    server = await start_server(en_engine, twilio_auth_token=TW, public_url=PUBLIC)
    url = PUBLIC + "/twilio/dial-ended"
    genuine = {"CallSid": "CA1", "CallStatus": "completed", "DialCallStatus": "completed"}
    signature = twilio_signature(TW, url, genuine)
    re_split = {"CallSid": "CA1", "CallStatuscompleted": "", "DialCallStatus": "completed"}
    assert twilio_signature(TW, url, re_split) == signature  # the scheme's weakness
    async with aiohttp.ClientSession() as http:
        async def post(form: dict[str, str], sig: str) -> tuple[int, str]:
            async with http.post(server.http + "/twilio/dial-ended", data=form,
                                 headers={"X-Twilio-Signature": sig}) as r:
                return r.status, await r.text()

        assert await post(re_split, signature) == (400, "unknown parameter 'CallStatuscompleted'")
        status, twiml = await post(genuine, signature)
        assert status == 200 and "<Say" not in twiml  # the caller left: nothing to say
        for missing in ("CallStatus", "DialCallStatus", "CallSid"):
            form = {k: v for k, v in genuine.items() if k != missing}
            assert await post(form, twilio_signature(TW, url, form)) == (
                400, f"missing parameter {missing!r}")
        odd = {**genuine, "CallStatus": "in-progress ", "SipHeader_X-Case": "7"}
        assert await post(odd, twilio_signature(TW, url, odd)) == (400, "unexpected CallStatus")
        withheld = {"CallSid": "CA2", "From": "", "CallerName": ""}  # a withheld number
        async with http.post(server.http + "/twilio/voice", data=withheld, headers={
                "X-Twilio-Signature": twilio_signature(TW, PUBLIC + "/twilio/voice", withheld)}) as r:
            assert r.status == 200 and '<Parameter name="token"' in await r.text()


async def test_bad_input_gets_a_400_not_a_500(start_server, caplog):
    caplog.set_level(logging.ERROR)
    server = await start_server(FakeEngine())
    nested = "[" * 30000 + "]" * 30000
    json_header = {"Content-Type": "application/json"}
    cases = [
        ("POST", "/api/staff/login", nested, json_header),  # unauthenticated
        ("POST", "/api/staff/users", nested, {**ADMIN, **json_header}),
        ("POST", "/v1/calls/pbx-1/human-line", '{"connected": false, "caller_waiting": true, '
                                               '"status": ' + "9" * 5000 + "}", json_header),
        ("POST", "/v1/calls/pbx-1/human-line", nested, json_header),
        ("GET", "/api/calls?limit=inf", None, ADMIN),
        ("GET", "/api/calls?offset=1e30", None, ADMIN),
        ("GET", "/api/calls?offset=" + "9" * 20, None, ADMIN),
        ("GET", "/api/calls?since=inf", None, ADMIN),
        ("GET", "/api/feedback?since=1e400", None, ADMIN),
        ("DELETE", "/api/staff/tokens/" + "9" * 20, None, ADMIN),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, body, headers in cases:
            async with http.request(method, server.http + path, data=body, headers=headers) as r:
                reply = await r.json()
                assert r.status == 400 and reply["error"], (method, path, r.status)
        async with http.get(server.http + "/api/calls?limit=5&offset=0", headers=ADMIN) as r:
            assert r.status == 200
        huge = '{"event": "start", "sample_rate": ' + "9" * 5000 + "}"
        for path in ("/v1/stream", "/twilio/media"):  # the same input on the call sockets
            async with http.ws_connect(server.ws + path) as ws:
                await ws.send_str(huge)
                while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                    pass
            assert (msg.data, msg.extra) == (1008, "message is not valid JSON"), path
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no tracebacks


async def test_health_names_the_engine_but_no_install_path(start_server, en_engine):
    server = await start_server(en_engine)
    status, health = await server.api("/healthz", token=None)
    assert status == 200 and health["engine"] == "pocketsphinx" and health["model"] == "embedded"
    assert "/" not in json.dumps(health)


@pytest.mark.parametrize("path", ["/desk", "/desk/static/desk.html", "/desk/static/desk.js",
                                  "/healthz", "/api/staff/me", "/no/such/page"])
async def test_every_response_carries_the_security_headers(start_server, path):
    server = await start_server(FakeEngine())
    async with aiohttp.ClientSession() as http, http.get(server.http + path) as r:
        headers = r.headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Server"] == "voicebot"  # no Python or aiohttp version


async def test_ids_cannot_forge_log_lines(start_server, caplog):
    caplog.set_level(logging.DEBUG)
    server = await start_server(FakeEngine(), stream_token="gw")
    forged = "x\n2026-01-01 00:00:00 INFO voicebot: admin logged in"
    gateway = {"Authorization": "Bearer gw"}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws + "/v1/stream", headers=gateway) as ws:
            await ws.send_str(json.dumps({"event": "start", "call_id": forged}))
            messages = [await ws.receive(timeout=10) for _ in range(2)]
        assert json.loads(messages[0].data)["reason"].startswith("start: call_id must be 1-128")
        assert (messages[1].type, messages[1].data) == (aiohttp.WSMsgType.CLOSE, 1008)
        twilio_start = {"event": "start", "streamSid": "MZ1", "start": {
            "streamSid": "MZ1", "callSid": forged}}
        async with http.ws_connect(server.ws + "/twilio/media") as ws:
            await ws.send_str(json.dumps(twilio_start))
            closing = await ws.receive(timeout=10)
        assert closing.data == 1008 and closing.extra.startswith("start: callSid must be 1-128")
        async with http.post(server.http + "/v1/calls/x%0Ay/human-line", headers=gateway,
                             json={"connected": True, "caller_waiting": False}) as r:
            assert r.status == 400
    assert server.app  # the server stays up
    assert not [r for r in caplog.records if "\n" in r.getMessage()]
