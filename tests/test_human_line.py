"""When the human line does not take a transferred Twilio call.

A real call through the Twilio protocol and the real engine asks for a person;
Twilio then requests the <Connect action> (we answer with <Dial action>) and,
once the dial is over, the <Dial action>. A caller still on the line who
reached no one is told so in their language and gets a call back: the transfer
returns to the desk's queue as `callback`. A caller who hung up while it rang
has abandoned it; a person who answered leaves the transfer as it was.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from voicebot.app import DESK
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.signing import twilio_signature

from .conftest import FIXTURES
from .staff_helpers import KNOWLEDGE, make_staff

pytestmark = pytest.mark.e2e
PUBLIC = "https://bot.example.com"
CALLER = "+15550123"


async def transferred_call(server) -> str:
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/twilio/media", samples, rate, ReplayOptions(
        protocol="twilio", caller=CALLER, marks="immediate", speed=0, max_call_s=30))
    assert result.outcome == "handoff:caller_request"
    return result.call_id  # the Twilio CallSid


async def desk_id(server, call_sid: str) -> str:
    """The desk keys transfers by our own call id; Twilio knows the CallSid."""
    return (await server.record(call_sid)).call_id


async def post(server, path: str, form: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.http + path, data=form) as r:
            return r.status, await r.text()


async def transfer_status(server, call_sid: str, expected: str) -> dict:
    desk, call_id = server.app[DESK].desk, await desk_id(server, call_sid)
    for _ in range(200):
        transfer = await desk.transfer(call_id)
        if transfer is not None and transfer["status"] == expected:
            return transfer
        await asyncio.sleep(0.01)
    raise AssertionError(f"transfer is {transfer and transfer['status']}, expected {expected}")


async def test_no_answer_tells_the_caller_and_queues_a_call_back(start_server, en_engine):
    server = await start_server(en_engine, public_url=PUBLIC, knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    call_id = await transferred_call(server)
    await transfer_status(server, call_id, "waiting")

    status, twiml = await post(server, "/twilio/stream-ended", {"CallSid": call_id})
    assert status == 200
    assert (f'<Dial action="{PUBLIC}/twilio/dial-ended">{server.settings.human_line}</Dial>'
            in twiml)

    status, twiml = await post(server, "/twilio/dial-ended", {
        "CallSid": call_id, "DialCallStatus": "no-answer", "CallStatus": "in-progress"})
    assert status == 200
    assert '<Say language="en-US">' in twiml and "call you back at this number" in twiml
    assert twiml.endswith("<Hangup/></Response>")
    transfer = await transfer_status(server, call_id, "callback")
    assert transfer["claimed_by"] == ""

    status, queue = await staff["bob"].get("/api/transfers")
    assert status == 200 and [t["call_id"] for t in queue["transfers"]] == [transfer["call_id"]]
    status, claimed = await staff["bob"].post(f"/api/transfers/{transfer['call_id']}/claim")
    assert status == 200 and claimed["transfer"]["claimed_by"] == "bob"


@pytest.mark.parametrize(("dial", "call", "then"), [
    ("no-answer", "completed", "abandoned"),  # the caller hung up while it rang
    ("completed", "in-progress", "waiting"),  # a person answered: the transfer stays as it was
])
async def test_no_one_left_to_tell(start_server, en_engine, dial, call, then):
    server = await start_server(en_engine, public_url=PUBLIC, knowledge_dir=KNOWLEDGE)
    call_id = await transferred_call(server)
    await transfer_status(server, call_id, "waiting")
    status, twiml = await post(server, "/twilio/dial-ended", {
        "CallSid": call_id, "DialCallStatus": dial, "CallStatus": call})
    assert status == 200 and "<Say" not in twiml and "<Hangup/>" in twiml
    await server.app[DESK].settled()  # every desk change the dial's end made is done
    assert (await server.app[DESK].desk.transfer(await desk_id(server, call_id)))["status"] == then


async def test_unknown_caller_number_is_not_promised_a_call_back(start_server, en_engine):
    server = await start_server(en_engine, public_url=PUBLIC)
    status, twiml = await post(server, "/twilio/dial-ended", {
        "CallSid": "CA-not-ours", "DialCallStatus": "busy", "CallStatus": "in-progress"})
    assert status == 200 and "call us again a little later" in twiml


async def test_dial_ended_requires_twilio_signature(start_server, en_engine):
    server = await start_server(en_engine, public_url=PUBLIC, twilio_auth_token="tw-secret")
    form = {"CallSid": "CA123", "DialCallStatus": "no-answer", "CallStatus": "in-progress"}
    assert (await post(server, "/twilio/dial-ended", form))[0] == 403
    good = twilio_signature("tw-secret", PUBLIC + "/twilio/dial-ended", form)
    async with aiohttp.ClientSession() as http:
        async with http.post(server.http + "/twilio/dial-ended", data=form,
                             headers={"X-Twilio-Signature": good}) as r:
            assert r.status == 200 and "<Say" in await r.text()


# --- other gateways: POST /v1/calls/{call_id}/human-line ------------------------------

async def native_transfer(server, call_id: str, caller: str = CALLER) -> None:
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        call_id=call_id, caller=caller, marks="immediate", speed=0, max_call_s=30,
        headers={"Authorization": "Bearer gw-secret"}))
    assert result.outcome == "handoff:caller_request"
    assert result.call_id == call_id  # the gateway's own id: what it reports back on


async def report(server, call_id: str, body, token: str | None = "gw-secret") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, str):
        headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.http}/v1/calls/{call_id}/human-line", headers=headers,
                             data=body if isinstance(body, str) else None,
                             json=None if isinstance(body, str) else body) as r:
            return r.status, await r.json(content_type=None) if r.status != 401 else {}


async def test_native_gateway_reports_no_answer_and_is_told_what_to_say(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, stream_token="gw-secret")
    await native_transfer(server, "pbx-0001")
    await transfer_status(server, "pbx-0001", "waiting")
    status, reply = await report(server, "pbx-0001", {
        "connected": False, "caller_waiting": True, "status": "busy"})
    assert status == 200 and reply["callback"] and reply["call_known"] and reply["language"] == "en"
    assert "call you back at this number" in reply["say"]
    await transfer_status(server, "pbx-0001", "callback")


async def test_native_gateway_reports_are_checked(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, stream_token="gw-secret")
    await native_transfer(server, "pbx-0002")
    good = {"connected": False, "caller_waiting": False, "status": "no-answer"}
    assert (await report(server, "pbx-0002", good, token=None))[0] == 401
    assert (await report(server, "pbx-0002", good, token="wrong"))[0] == 401
    for bad in ("not json", "[1, 2]", {"connected": "no", "caller_waiting": True},
                {"connected": False, "caller_waiting": True, "status": "x" * 100}):
        status, reply = await report(server, "pbx-0002", bad)
        assert status == 400 and reply["error"], bad
    await transfer_status(server, "pbx-0002", "waiting")  # nothing changed by the bad reports
    status, reply = await report(server, "pbx-0002", good)
    assert status == 200 and reply["say"] == "" and not reply["callback"]
    await transfer_status(server, "pbx-0002", "abandoned")
    status, reply = await report(server, "pbx-unknown", {"connected": False, "caller_waiting": True})
    assert status == 200 and not reply["call_known"] and "call us again" in reply["say"]
