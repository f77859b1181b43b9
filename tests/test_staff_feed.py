"""The live feed and the CRM webhook, driven by real calls through the real server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voicebot.app import DESK
from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.staff.webhook import sign

from .conftest import FIXTURES, STAFF_TOKEN
from .staff_helpers import KNOWLEDGE

pytestmark = pytest.mark.e2e
BEARER = {"Authorization": f"Bearer {STAFF_TOKEN}"}


async def next_event(feed: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    """Read SSE frames until one of type `kind` arrives."""
    event = data = ""
    while True:
        line = (await feed.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            if event == kind:
                return json.loads(data)
            event = data = ""


def call_task(server: Any, name: str, **options: Any) -> asyncio.Task[Any]:
    samples, rate = read_wav(FIXTURES / name)
    return asyncio.create_task(replay(server.ws + "/v1/stream", samples, rate,
                                      ReplayOptions(max_call_s=60, **options)))


@pytest.mark.engine
async def test_a_transfer_reaches_the_desk_before_the_handoff_line_has_played(
        start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    async with aiohttp.ClientSession() as http, \
            http.get(server.http + "/api/feed", headers=BEARER) as feed:
        assert feed.status == 200 and feed.content_type == "text/event-stream"
        await next_event(feed, "ready")
        call = call_task(server, "en_human_person.wav", speed=2)
        message = await asyncio.wait_for(next_event(feed, "transfer"), 40)
        received = time.time()
        transfer = message["transfer"]
        record = await server.record(transfer["call_id"])
        assert not call.done() and record.outcome == ""  # the handoff itself is still to come
        result = await call

    latency = received - transfer["decided_at"]
    assert 0 <= latency < 1.0, f"transfer reached the desk {latency:.3f} s after the decision"
    assert result.outcome == "handoff:caller_request" and transfer["call_id"] == result.call_id
    assert transfer["reason"] == "caller_request" and transfer["caller"] == "+15550123"
    assert transfer["intent"] == "human" and transfer["sentiment_label"] in (
        "negative", "neutral", "positive")
    record = await server.record(result.call_id)
    handoff_line = next(p for p in record.prompts if p["name"] == "handoff")
    assert received < handoff_line["finished_at"]  # on the desk before the phone rings for a human
    print(f"feed latency {latency * 1000:.1f} ms; desk ahead of the transfer by "
          f"{handoff_line['finished_at'] - received:.2f} s")
    status, queue = await server.api("/api/transfers")
    assert [t["call_id"] for t in queue["transfers"]] == [result.call_id]


@pytest.mark.engine
async def test_a_caller_who_hangs_up_during_the_handoff_line_leaves_the_queue(
        start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    async with aiohttp.ClientSession() as http, \
            http.get(server.http + "/api/feed", headers=BEARER) as feed:
        await next_event(feed, "ready")
        # DTMF 0 during the disclosure: the handoff line starts once the disclosure
        # has played (~7.7 s at real time); the caller hangs up 1.3 s into it
        call = call_task(server, "en_dtmf_zero.wav", dtmf=[(1.0, "0")], hangup_at=9.0)
        transfer = (await asyncio.wait_for(next_event(feed, "transfer"), 30))["transfer"]
        update = await asyncio.wait_for(next_event(feed, "transfer_update"), 30)
        result = await call
    assert result.outcome == "abandoned"
    assert update == {**update, "call_id": transfer["call_id"], "status": "abandoned"}
    assert (await server.api("/api/transfers"))[1]["transfers"] == []


class Receiver:
    """A CRM endpoint on this machine that fails `failures` times, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if len(self.requests) <= self.failures:
            return web.Response(status=503)
        return web.json_response({"ok": True})

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}/hook"


@pytest.mark.parametrize("failures, delivered", [(2, True), (99, False)])
async def test_crm_webhook_is_signed_retried_and_failures_are_shown_to_admins(
        start_server, failures, delivered):
    receiver = Receiver(failures)
    runner, url = await receiver.start()
    try:
        server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE, crm_webhook_url=url,
                                    crm_webhook_secret="crm-secret")
        webhook = server.app[DESK].webhook
        webhook.attempts, webhook.base_delay_s = 3, 0.05
        result = await call_task(server, "en_dtmf_zero.wav", dtmf=[(1.0, "0")], speed=0,
                                 marks="immediate")
        assert result.outcome == "handoff:caller_request"
        for _ in range(200):
            status, body = await server.api("/api/staff/webhook-deliveries")
            if body["deliveries"]:
                break
            await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()

    assert len(receiver.requests) == 3
    assert len({h["X-Voicebot-Delivery"] for h, _ in receiver.requests}) == 1  # one delivery id
    for headers, raw in receiver.requests:
        assert headers["X-Voicebot-Signature"] == sign("crm-secret", headers["X-Voicebot-Timestamp"], raw)
        assert headers["X-Voicebot-Event"] == "transfer.created"
    payload = json.loads(receiver.requests[0][1])
    assert payload["call_id"] == result.call_id and payload["reason"] == "caller_request"
    assert "transcript" not in payload  # case data only
    assert body["enabled"] is True
    [row] = body["deliveries"]
    assert row["call_id"] == result.call_id and row["attempts"] == 3
    assert row["delivered"] == int(delivered) and row["last_error"] == "HTTP 503"
