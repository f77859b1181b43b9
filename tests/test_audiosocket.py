"""Asterisk AudioSocket calls through the real server: our own AudioSocket
peer replays real fixtures over TCP to the real engine, the dialplan's HTTP
questions are asked as Asterisk's CURL() would, and bad peers are refused
while a real call carries on beside them."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

import aiohttp
import numpy as np
import pytest

from voicebot.app import AUDIOSOCKET, REGISTRY
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.dialog.lang import PACKS
from voicebot.telephony import audiosocket_codec as ac

from .audiosocket_client import AudioSocketOptions, AudioSocketResult, call
from .conftest import FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fixture(name: str) -> np.ndarray:
    samples, rate = read_wav(FIXTURES / name)
    return resample(samples, rate, ac.LINE_RATE)


async def start(start_server, engine, **overrides):
    server = await start_server(engine, audiosocket_port=free_port(), **overrides)
    return server, server.app[AUDIOSOCKET].port


async def as_call(port: int, name: str, **options) -> AudioSocketResult:
    return await call("127.0.0.1", port, fixture(name), AudioSocketOptions(max_call_s=45, **options))


async def dial(server, call_id: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.http}/v1/calls/{call_id}/dial") as r:
        return r.status, await r.text()


async def prompt_frames(server, text: str) -> int:
    services = server.app[REGISTRY].services
    samples = await services.prompts.get(services.flow.voice("en"), text, ac.LINE_RATE)
    return -(-samples.size // (ac.FRAME_BYTES // 2))


async def test_calls_reach_the_engine_and_go_where_the_bot_decided(start_server, en_engine):
    """Four calls at once: a person request (then its unanswered human line),
    DTMF 0, a barge-in and a routine request the bot answers. Each is paced,
    recorded and routed. (Short silences: the routine call ends on one.)"""
    server, port = await start(start_server, en_engine, no_input_timeout_s=1.5)
    person_and_back = asyncio.create_task(person_then_no_answer(server, port))
    dtmf, barge, order = await asyncio.gather(
        as_call(port, "en_dtmf_zero.wav", dtmf=[(1.0, "0")]),
        as_call(port, "en_barge_in.wav"),
        as_call(port, "en_order_status.wav"),
    )
    person = await person_and_back
    said = {p["name"]: p["text"] for p in (await server.record(person.call_id)).prompts}
    disclosure = await prompt_frames(server, said["disclosure"])
    handoff = await prompt_frames(server, said["handoff"])

    for result in (person, dtmf, barge):
        assert result.bot_hung_up and result.closed_by_bot  # AudioSocket() returns to the dialplan
        record = await server.record(result.call_id)
        assert (record.gateway, record.outcome) == ("audiosocket", "handoff")
        assert await dial(server, result.call_id) == (200, server.settings.human_line)
    for result in (person, dtmf):
        assert (await server.record(result.call_id)).handoff_reason == "caller_request"

    # the whole disclosure, then the handoff line, frame for frame, at real time
    assert len(person.frames) == disclosure + handoff
    first_disclosure_frame, last_disclosure_frame = person.frames[0][0], person.frames[disclosure - 1][0]
    assert last_disclosure_frame - first_disclosure_frame >= 0.9 * (disclosure - 1) * 0.02
    record = await server.record(person.call_id)
    assert record.disclosure_confirmed_by == "playout"  # our clock, not a gateway echo
    assert record.utterances[0]["text"] == "i want to speak to a person"

    record = await server.record(dtmf.call_id)
    assert record.utterances[0]["source"] == "dtmf" and record.utterances[0]["text"] == "0"

    # barge-in: the menu was cut where the caller spoke. Every other prompt was
    # sent whole, so what is left over is the part of the menu the caller heard.
    record = await server.record(barge.call_id)
    cut = [p for p in record.prompts if p["confirmed_by"] == "interrupted"]
    assert [p["name"] for p in cut] == ["menu"]
    whole = [await prompt_frames(server, p["text"]) for p in record.prompts if p not in cut]
    heard_of_menu = len(barge.frames) - sum(whole)
    assert 0 < heard_of_menu < await prompt_frames(server, cut[0]["text"])

    record = await server.record(order.call_id)
    assert record.outcome == "completed" and order.bot_hung_up
    assert await dial(server, order.call_id) == (200, "hangup")
    assert await dial(server, str(uuid.uuid4())) == (404, "")  # unknown: the dialplan's own fallback


async def person_then_no_answer(server, port: int) -> AudioSocketResult:
    """A person request; the human line does not answer, so the dialplan runs
    AudioSocket() again with the same UUID: the bot says a person will call back."""
    first = await as_call(port, "en_human_person.wav")
    async with aiohttp.ClientSession() as http, http.get(f"{server.http}/v1/calls/{first.call_id}") as r:
        route = await r.json()
    assert route == {"call_id": first.call_id, "outcome": "handoff", "handoff_reason": "caller_request",
                     "handoff_target": server.settings.human_line, "language": "en",
                     "dial": server.settings.human_line}
    back = await call("127.0.0.1", port, np.zeros(0, np.int16),
                      AudioSocketOptions(call_id=first.call_id, max_call_s=20))
    said = PACKS["en"].prompts["human_unavailable_no_number"]  # AudioSocket carries no number
    assert back.bot_hung_up and len(back.frames) == await prompt_frames(server, said)
    for _ in range(100):  # the desk learns of it through the event bus
        status, transfers = await server.api("/api/transfers")
        rows = [t for t in transfers["transfers"] if t["call_id"] == first.call_id] if status == 200 else []
        if rows and rows[0]["status"] == "callback":
            break
        await asyncio.sleep(0.05)
    assert rows and rows[0]["status"] == "callback"
    return first


async def raw(port: int, data: bytes, then_close: bool = False, read_s: float = 20) -> bytes:
    """Send `data` as a peer would (then close our side if asked) and read until
    the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if then_close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(-1), read_s)
    finally:
        writer.close()


async def test_bad_peers_are_closed_with_a_log_line_and_no_other_call_is_touched(
        start_server, en_engine, caplog):
    caplog.set_level(logging.INFO)
    server, port = await start(start_server, en_engine, idle_timeout_s=2.0)
    good = asyncio.create_task(as_call(port, "en_human_person.wav"))
    half_open = asyncio.create_task(half_open_peer(server, port))
    started = str(uuid.uuid4())
    audio = ac.audio_frame(b"\x00" * ac.FRAME_BYTES)
    bad = {
        "unknown kind": b"\x42\x00\x00",
        "oversize": ac.uuid_frame(str(uuid.uuid4())) + b"\x10\xff\xff" + b"\x00" * 100,
        "no uuid first": audio,
        "bad dtmf mid-call": ac.uuid_frame(started) + audio * 5 + ac.encode(ac.Kind.DTMF, b"x"),
        "closed inside a frame": ac.uuid_frame(str(uuid.uuid4())) + b"\x10\x01",
        "silent peer": b"",
    }
    replies = await asyncio.gather(*(raw(port, data, then_close=name == "closed inside a frame")
                                     for name, data in bad.items()))
    # closed, nothing said; the oversize frame followed a valid UUID, so that call had
    # started and may have sent the disclosure's first audio before the frame was read
    assert [replies[0], replies[2], replies[-1]] == [b"", b"", b""]
    for line in ("unknown frame kind 0x42", "frame of 65535 bytes is over the limit of 8000",
                 "the first frame must be the call's UUID", "DTMF frame must carry one of",
                 "the connection closed inside a frame", "no UUID frame within 2 s"):
        assert line in caplog.text
    record = await server.record(started)
    assert record.outcome == "abandoned" and record.ended_at is not None
    assert await dial(server, started) == (200, server.settings.human_line)  # still to a person

    result = await good
    assert result.bot_hung_up
    assert (await server.record(result.call_id)).handoff_reason == "caller_request"
    assert server.app[REGISTRY].metrics.sample(
        "voicebot_protocol_errors_total", code=str(ac.PROTOCOL_ERROR_CODE)) == 6  # the silent peer too
    call_id = await half_open
    assert f"call {call_id!r} handed off: media_timeout" in caplog.text
    assert not server.app[REGISTRY].sessions


async def half_open_peer(server, port: int) -> str:
    """The peer sends its UUID and some audio, then neither sends nor reads (its
    host went away without a FIN): after the idle timeout the call goes to a
    human and the socket is closed."""
    call_id = str(uuid.uuid4())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ac.uuid_frame(call_id) + ac.audio_frame(b"\x00" * ac.FRAME_BYTES) * 10)
    for _ in range(400):
        record = await server.record(call_id)
        if record is not None and record.ended_at is not None:
            break
        await asyncio.sleep(0.05)
    assert record.outcome == "handoff" and record.handoff_reason == "media_timeout"
    received = await asyncio.wait_for(reader.read(-1), 20)  # everything, then the server's FIN
    assert received.endswith(ac.hangup_frame())
    writer.close()
    return call_id
