"""The staff API through a real server: every route against every role, agent
scoping, claims, dispositions, feedback export, log-in sessions, audit."""

from __future__ import annotations

import csv
import io
import json

import aiohttp
import pytest

from voicebot.app import DESK
from voicebot.asr.fake import FakeEngine
from voicebot.staff.auth import check_password
from voicebot.types import HandoffReason

from .conftest import STAFF_TOKEN
from .staff_helpers import KNOWLEDGE, PASSWORD, Client, make_staff, seed_call, utterance

pytestmark = pytest.mark.e2e

PERSON = [utterance("where is my order one two three four five", 0.82, 1.0, "order_status"),
          utterance("this is useless i want a real person", 0.9, 9.0, "human")]

# (method, path, body, lowest role allowed); {call} is a waiting transfer
ROUTES = [
    ("GET", "/api/staff/me", None, "agent"),
    ("GET", "/api/feed", None, "agent"),
    ("GET", "/api/transfers", None, "agent"),
    ("POST", "/api/transfers/{call}/claim", {}, "agent"),
    ("GET", "/api/calls", None, "agent"),
    ("GET", "/api/calls/{call}", None, "agent"),
    ("POST", "/api/calls/{call}/feedback", {"kind": "good_handoff"}, "agent"),
    ("POST", "/api/calls/{call}/disposition", {"disposition": "resolved"}, "agent"),
    ("GET", "/api/feedback", None, "supervisor"),
    ("GET", "/api/reports/handoffs", None, "supervisor"),
    ("GET", "/api/staff/users", None, "admin"),
    ("POST", "/api/staff/users", {"name": "new", "role": "agent"}, "admin"),
    ("PATCH", "/api/staff/users/bob", {"role": "agent"}, "admin"),
    ("GET", "/api/staff/tokens", None, "admin"),
    ("POST", "/api/staff/users/bob/tokens", {}, "admin"),
    ("DELETE", "/api/staff/tokens/999999", None, "admin"),
    ("GET", "/api/staff/audit", None, "admin"),
    ("GET", "/api/staff/settings", None, "admin"),
    ("GET", "/api/staff/webhook-deliveries", None, "admin"),
    ("POST", "/api/staff/logout", {}, "agent"),
]
LEVEL = {"agent": 0, "supervisor": 1, "admin": 2}


@pytest.fixture
async def desk(start_server):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    await seed_call(server, "call-waiting", PERSON)
    return server, staff


async def status_only(client: Client, method: str, path: str, body: object) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, client.base + path, json=body, headers=headers) as r:
            if r.content_type == "text/event-stream":
                return r.status, ""  # the live feed never ends: its status is enough
            return r.status, await r.text()


async def test_every_route_answers_each_role_as_documented(desk):
    server, staff = desk
    callers = {"nobody": Client(server.http), "bad token": Client(server.http, "not-a-token"),
               "agent": staff["ann"], "supervisor": staff["sue"], "admin": staff["ada"]}
    wrong, refusals = [], {401: set(), 403: set()}
    for method, template, body, lowest in ROUTES:
        for existing in ("call-waiting", "no-such-call"):
            path = template.format(call=existing)
            for who, client in callers.items():
                status, text = await status_only(client, method, path, body)
                if who in ("nobody", "bad token"):
                    expected = {401}
                elif LEVEL[who] < LEVEL[lowest]:
                    expected = {403}
                else:
                    expected = set(range(200, 500)) - {401, 403}
                if status not in expected:
                    wrong.append(f"{method} {path} as {who}: {status}")
                if status in refusals:
                    refusals[status].add(text)
    assert wrong == []
    # a refusal says the same thing whatever the route, the role or whether the call exists
    assert len(refusals[401]) == 1 and len(refusals[403]) == 1
    assert "call" not in next(iter(refusals[401])) and "admin" not in next(iter(refusals[403]))


async def test_bootstrap_token_is_an_admin_and_reads_a_call_with_assist(desk):
    server, _ = desk
    status, me = await server.api("/api/staff/me")
    assert status == 200 and me["role"] == "admin" and me["via"] == "bootstrap"
    status, call = await server.api("/api/calls/call-waiting")
    assert status == 200
    assert call["transfer"]["status"] == "waiting" and call["transfer"]["reason"] == "caller_request"
    assert [u["text"] for u in call["utterances"]] == [u.text for u in PERSON]
    assert call["utterances"][0]["words"][0]["conf"] < call["word_confidence_threshold"]
    assert call["disclosure_confirmed_by"] == "mark" and call["disclosure_played_at"]
    assist = call["assist"]
    assert assist["summary"]["intent"] == "order_status"
    assert {"kind": "order_number", "value": "12345", "utterance": 0} in assist["summary"]["entities"]
    assert assist["sentiment"]["per_utterance"][1] < 0  # "this is useless"
    assert assist["suggestions"][0]["title"] == "Checking where an order is"
    assert "order" in assist["suggestions"][0]["matched"]
    assert "order 12345" in assist["next_action"]


async def test_agents_see_the_queue_and_only_the_calls_handed_to_them(desk):
    server, staff = desk
    ann, bob, sue = staff["ann"], staff["bob"], staff["sue"]
    await seed_call(server, "call-done", [utterance("where is my order", 0.9, 1.0, "order_status")],
                    reason=None)
    status, queue = await ann.get("/api/transfers")
    assert [t["call_id"] for t in queue["transfers"]] == ["call-waiting"]
    assert (await ann.get("/api/calls/call-done"))[0] == 404  # completed calls are not theirs
    assert [c["call_id"] for c in (await ann.get("/api/calls"))[1]["calls"]] == ["call-waiting"]
    assert {c["call_id"] for c in (await sue.get("/api/calls"))[1]["calls"]} == {
        "call-waiting", "call-done"}

    assert (await ann.post("/api/calls/call-waiting/disposition",
                           {"disposition": "resolved"}))[0] == 403  # claim first
    status, claimed = await ann.post("/api/transfers/call-waiting/claim")
    assert status == 200 and claimed["transfer"]["claimed_by"] == "ann"
    assert (await bob.post("/api/transfers/call-waiting/claim"))[0] == 404  # not bob's to see
    status, lost = await sue.post("/api/transfers/call-waiting/claim")
    assert status == 409 and lost["claimed_by"] == "ann"  # a supervisor sees every call
    assert (await bob.get("/api/calls/call-waiting"))[0] == 404  # now ann's call
    assert (await bob.get("/api/transfers"))[1]["transfers"] == []
    assert [t["call_id"] for t in (await ann.get("/api/transfers"))[1]["transfers"]] == ["call-waiting"]

    status, body = await ann.post("/api/calls/call-waiting/disposition",
                                  {"disposition": "nonsense"})
    assert status == 400 and "resolved" in body["error"]
    status, closed = await ann.post("/api/calls/call-waiting/disposition",
                                    {"disposition": "resolved", "notes": "sent tracking link"})
    assert status == 200 and closed["transfer"]["status"] == "closed"
    assert closed["transfer"]["notes"] == "sent tracking link"
    assert (await ann.post("/api/calls/call-waiting/disposition",
                           {"disposition": "resolved"}))[0] == 409
    assert (await sue.get("/api/calls?status=closed"))[1]["calls"][0]["disposition"] == "resolved"


async def test_list_calls_filters_and_the_handoff_report(desk):
    server, staff = desk
    sue = staff["sue"]
    await seed_call(server, "call-ko", [utterance("상담원", 0.9, 1.0, "human")], language="ko")
    await seed_call(server, "call-quiet", [], reason=HandoffReason.NO_INPUT)
    await seed_call(server, "call-done", [utterance("goodbye", 0.9, 1.0, "goodbye")], reason=None)

    async def ids(query: str) -> set[str]:
        status, body = await sue.get("/api/calls?" + query)
        assert status == 200, body
        return {c["call_id"] for c in body["calls"]}

    assert await ids("language=ko") == {"call-ko"}
    assert await ids("reason=no_input") == {"call-quiet"}
    assert await ids("outcome=completed") == {"call-done"}
    assert await ids("outcome=handoff&language=en") == {"call-waiting", "call-quiet"}
    assert await ids("since=4102444800") == set()  # year 2100
    assert len(await ids("limit=2")) == 2
    assert (await sue.get("/api/calls?since=yesterday"))[0] == 400
    status, report = await sue.get("/api/reports/handoffs")
    assert report["reasons"] == {"caller_request": 2, "no_input": 1}
    assert report["outcomes"] == {"handoff": 3, "completed": 1}


async def test_every_transcript_read_is_audited(desk):
    server, staff = desk
    await staff["ann"].get("/api/calls/call-waiting")
    await staff["sue"].get("/api/calls/call-waiting")
    await staff["bob"].get("/api/calls/no-such-call")
    status, body = await staff["ada"].get("/api/staff/audit?call_id=call-waiting")
    reads = [(a["user"], a["role"]) for a in body["audit"] if a["action"] == "read_transcript"]
    assert sorted(reads) == [("ann", "agent"), ("sue", "supervisor")]


async def test_feedback_on_the_bot_is_exported_for_retuning(desk):
    server, staff = desk
    ann, sue = staff["ann"], staff["sue"]
    status, body = await ann.post("/api/calls/call-waiting/feedback", {"kind": "transcript_wrong"})
    assert status == 400  # which utterance?
    assert (await ann.post("/api/calls/call-waiting/feedback",
                           {"kind": "transcript_wrong", "utterance": 7}))[0] == 400
    assert (await ann.post("/api/calls/call-waiting/feedback", {
        "kind": "transcript_wrong", "utterance": 0, "correction": "where is my order 12346",
        "comment": "last digit"}))[0] == 201
    assert (await ann.post("/api/calls/call-waiting/feedback", {
        "kind": "should_not_have_transferred", "comment": "the bot \"could\" have, answered"}))[0] == 201

    status, text = await sue.get("/api/feedback?format=jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert status == 200 and [r["kind"] for r in rows] == ["transcript_wrong",
                                                          "should_not_have_transferred"]
    assert rows[0]["heard"] == PERSON[0].text and rows[0]["correction"] == "where is my order 12346"
    assert rows[0]["user"] == "ann" and rows[0]["language"] == "en"
    assert rows[0]["handoff_reason"] == "caller_request"
    status, text = await sue.get("/api/feedback?format=csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[1]["comment"] == 'the bot "could" have, answered' and parsed[0]["utterance"] == "0"
    assert (await sue.get("/api/feedback?format=xml"))[0] == 400


async def test_login_session_cookie_csrf_and_logout(desk):
    server, staff = desk
    browser = Client(server.http)
    assert (await browser.post("/api/staff/login", {"name": "ann", "password": "wrong"}))[0] == 401
    assert (await browser.post("/api/staff/login", {"name": "nobody", "password": "wrong"}))[0] == 401
    status, me = await browser.post("/api/staff/login", {"name": "ann", "password": PASSWORD})
    assert status == 200 and me == {"name": "ann", "role": "agent"}
    assert (await browser.get("/api/staff/me"))[1]["via"] == "session"
    # a cross-site form post carries the cookie but cannot send JSON: refused
    async with aiohttp.ClientSession(cookie_jar=browser.cookies) as http:
        async with http.post(server.http + "/api/transfers/call-waiting/claim",
                             data={"x": "1"}) as r:
            assert r.status == 401
    assert (await browser.post("/api/transfers/call-waiting/claim"))[0] == 200
    assert (await browser.post("/api/staff/logout"))[0] == 200
    assert (await browser.get("/api/staff/me"))[0] == 401

    # guessing is throttled per source address: tests/security/test_staff_hardening.py
    stored = (await server.app[DESK].staff.user("ann")).password_hash
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert check_password(PASSWORD, stored) and not check_password("wrong", stored)


async def test_admin_manages_users_and_tokens(desk):
    server, staff = desk
    ada, bob = staff["ada"], staff["bob"]
    status, body = await ada.post("/api/staff/users", {"name": "cy", "role": "agent",
                                                       "password": "short"})
    assert status == 400
    assert (await ada.post("/api/staff/users", {"name": "bob", "role": "agent"}))[0] == 409
    assert (await ada.post("/api/staff/users", {"name": "x", "role": "boss"}))[0] == 400
    status, tokens = await ada.get("/api/staff/tokens")
    assert {t["user"] for t in tokens["tokens"]} == {"ann", "bob", "sue", "ada"}
    assert all("token" not in t and "token_hash" not in t for t in tokens["tokens"])

    status, _ = await ada.call("PATCH", "/api/staff/users/bob", {"role": "supervisor"})
    assert status == 200 and (await bob.get("/api/feedback"))[0] == 200
    status, _ = await ada.call("PATCH", "/api/staff/users/bob", {"disabled": True})
    assert status == 200 and (await bob.get("/api/staff/me"))[0] == 401
    assert (await ada.call("PATCH", "/api/staff/users/ghost", {"role": "agent"}))[0] == 404

    ann_token = next(t for t in tokens["tokens"] if t["user"] == "ann")
    assert (await ada.call("DELETE", f"/api/staff/tokens/{ann_token['id']}"))[0] == 200
    assert (await staff["ann"].get("/api/staff/me"))[0] == 401

    status, settings = await ada.get("/api/staff/settings")
    assert settings["settings"]["staff_token"] == "(set)"
    assert STAFF_TOKEN not in json.dumps(settings)


async def test_admins_see_whether_secrets_are_set_never_the_secrets_or_url_passwords(start_server):
    secret, redis_password = "root-secret-of-this-deployment-0123456789", "redis-password-42"
    server = await start_server(FakeEngine(), secret_key=secret, lookup_secret="lookup-key-42",
                                redis_url=f"redis://:{redis_password}@127.0.0.1:1/0")
    status, body = await server.api("/api/staff/settings")
    shown = json.dumps(body)
    assert status == 200 and body["settings"]["secret_key"] == "(set)"
    assert body["settings"]["redis_url"] == "redis://:***@127.0.0.1:1/0"
    assert secret not in shown and redis_password not in shown and "lookup-key-42" not in shown
