"""The example orders flow through a real server: a keyed order number, read
back and confirmed, a signed lookup at a real backend the test starts, its
answer spoken from a template; a failing backend hands the call to a person
with the reason; routing to two queues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from voicebot.asr.fake import FakeEngine
from voicebot.auth import sign
from voicebot.dialog.flow import DEFAULT_FLOW

from .call_client import Caller

pytestmark = pytest.mark.e2e
ORDERS = DEFAULT_FLOW.parent / "orders.toml"
SECRET = "lookup-secret"


@pytest.fixture
async def backend():
    """A deployment's order service: checks the signature, answers from a table."""
    seen: list[dict] = []
    state = {"status": 200}

    async def orders(request: web.Request) -> web.Response:
        body = await request.read()
        expected = sign(SECRET, request.headers["X-Voicebot-Timestamp"], body)
        seen.append({"body": json.loads(body), "signed": request.headers.get("X-Voicebot-Signature") == expected})
        if state["status"] != 200:
            return web.Response(status=state["status"])
        return web.json_response({"status": "shipped on Monday"})

    app = web.Application()
    app.router.add_post("/orders", orders)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/orders", seen, state
    await runner.cleanup()


def orders_flow(tmp_path: Path, url: str) -> str:
    path = tmp_path / "orders.toml"
    path.write_text(ORDERS.read_text().replace("http://127.0.0.1:8089/orders", url))
    return str(path)


async def key_in_order_4172(call: Caller) -> dict:
    """menu → 1 (order status) → key 4172# → the read-back prompt, returned."""
    await call.prompt("menu")
    await call.keys("1")
    await call.prompt("order_number")
    await call.keys("4172#")
    return await call.prompt("confirm_slot")


async def test_keyed_order_number_is_confirmed_looked_up_and_spoken(start_server, backend, tmp_path):
    url, seen, _ = backend
    server = await start_server(FakeEngine(), flow=orders_flow(tmp_path, url), lookup_secret=SECRET)
    async with Caller(server.ws, call_id="order-1") as call:
        confirm = await key_in_order_4172(call)
        assert "4 1 7 2" in confirm["text"]
        await call.keys("1")
        answer = await call.prompt("order_answer")
        assert answer["text"] == "Your order 4 1 7 2 shipped on Monday."
        await call.prompt("anything_else")
        await call.hang_up()
    assert seen == [{"body": {"call_id": "order-1", "language": "en", "node": "lookup_order",
                              "slots": {"order_number": "4172"}}, "signed": True}]


async def test_a_wrong_read_back_asks_again_and_a_short_number_is_refused(start_server, backend, tmp_path):
    url, seen, _ = backend
    server = await start_server(FakeEngine(), flow=orders_flow(tmp_path, url), lookup_secret=SECRET)
    async with Caller(server.ws) as call:
        await call.prompt("menu")
        await call.keys("1")
        await call.prompt("order_number")
        await call.keys("12#")  # shorter than min_digits
        await call.prompt("slot_invalid")
        await call.keys("98765#")
        await call.prompt("confirm_slot")
        await call.keys("2")  # no: ask again
        await call.prompt("order_number")
        await call.keys("55555#")
        assert "5 5 5 5 5" in (await call.prompt("confirm_slot"))["text"]
        await call.keys("1")
        await call.prompt("order_answer")
        await call.hang_up()
    assert [s["body"]["slots"] for s in seen] == [{"order_number": "55555"}]


@pytest.mark.parametrize("status", [503, 404])
async def test_a_failing_backend_hands_over_with_the_reason(start_server, backend, tmp_path, status):
    url, seen, state = backend
    state["status"] = status
    server = await start_server(FakeEngine(), flow=orders_flow(tmp_path, url), lookup_secret=SECRET)
    async with Caller(server.ws, call_id=f"fail-{status}") as call:
        await key_in_order_4172(call)
        await call.keys("1")
        handoff = await call.event("handoff")
    assert handoff["reason"] == "lookup_failed"
    assert handoff["target"] == "sip:support@pbx.example.com"
    assert f"HTTP {status}" in handoff["summary"]
    record = await server.record(f"fail-{status}")
    assert record.handoff_reason == "lookup_failed"


async def test_an_unreachable_backend_hands_over(start_server, tmp_path, unused_tcp_port):
    flow = orders_flow(tmp_path, f"http://127.0.0.1:{unused_tcp_port}/orders")
    server = await start_server(FakeEngine(), flow=flow)
    async with Caller(server.ws) as call:
        await key_in_order_4172(call)
        await call.keys("1")
        handoff = await call.event("handoff")
    assert handoff["reason"] == "lookup_failed" and "unreachable" in handoff["summary"]


@pytest.mark.parametrize(("keys", "reason", "target"), [
    ("2", "routed", "sip:billing@pbx.example.com"),  # billing goes to its own queue
    ("0", "caller_request", "sip:support@pbx.example.com"),  # a person, from the menu's queue
])
async def test_routing_to_two_queues(start_server, backend, tmp_path, keys, reason, target):
    url, _, _ = backend
    server = await start_server(FakeEngine(), flow=orders_flow(tmp_path, url))
    async with Caller(server.ws) as call:
        await call.prompt("menu")
        await call.keys(keys)
        handoff = await call.event("handoff")
    assert (handoff["reason"], handoff["target"]) == (reason, target)
