"""A caller asks us to erase what we hold about them: the admin API and the CLI.

A real call through the real engine (it asks for a person, so it also leaves a
desk transfer) plus seeded calls from two numbers; erasing one number removes
its calls, their transcripts and the desk's rows, and nothing of the other's.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from voicebot.app import DESK
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES
from .servers import wait_for
from .staff_helpers import KNOWLEDGE, make_staff, seed_call, utterance
from .test_staff_cli import staff_cli

pytestmark = pytest.mark.e2e
ERASED, KEPT = "+15550123", "+15550999"


async def test_admin_erases_every_call_from_a_number(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    real = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        caller=ERASED, marks="immediate", speed=0, max_call_s=30))
    assert real.outcome.startswith("handoff:")  # put through, or confirmed first (the ladder)
    await seed_call(server, "older-call", [utterance("where is my order", 0.9, 1.0)],
                    reason=None, caller=ERASED)
    await seed_call(server, "someone-else", [utterance("agent please", 0.9, 1.0)], caller=KEPT)
    status, feedback = await staff["sue"].post("/api/calls/older-call/feedback", {
        "kind": "should_not_have_transferred", "comment": "fine"})
    assert status in (200, 201)
    assert len((await staff["sue"].get("/api/calls"))[1]["calls"]) == 3

    for who in ("ann", "sue"):  # agents and supervisors may not
        assert (await staff[who].post("/api/privacy/erase", {"caller": ERASED}))[0] == 403
    assert (await staff["ada"].post("/api/privacy/erase", {"caller": ""}))[0] == 400
    assert (await staff["ada"].post("/api/privacy/erase", {"caller": 15550123}))[0] == 400
    status, body = await staff["ada"].post("/api/privacy/erase", {"caller": ERASED})
    assert status == 200 and body == {"erased_calls": 2}

    calls = (await staff["sue"].get("/api/calls"))[1]["calls"]
    assert [c["call_id"] for c in calls] == ["someone-else"]
    for call_id in (real.call_id, "older-call"):
        assert (await staff["sue"].get(f"/api/calls/{call_id}"))[0] == 404
        assert await server.record(call_id) is None
        assert await server.app[DESK].desk.transfer(call_id) is None
    assert await server.app[DESK].desk.feedback() == []
    assert (await server.record("someone-else")).utterances[0]["text"] == "agent please"
    status, audit = await staff["ada"].get("/api/staff/audit")
    erasure = next(row for row in audit["audit"] if row["action"] == "erase_caller")
    assert erasure["detail"] == "2 calls" and ERASED not in str(audit)
    status, body = await staff["ada"].post("/api/privacy/erase", {"caller": ERASED})
    assert body == {"erased_calls": 0}  # asked twice: nothing left


async def test_erase_from_the_shell(start_server, tmp_path):
    from voicebot.asr.fake import FakeEngine

    db = tmp_path / "calls.db"
    server = await start_server(FakeEngine(), db=str(db), knowledge_dir=KNOWLEDGE)
    await seed_call(server, "c-erase", [utterance("agent please", 0.9, 1.0)], caller=ERASED)
    await seed_call(server, "c-keep", [utterance("agent please", 0.9, 1.0)], caller=KEPT)
    done = staff_cli(db, "erase-caller", ERASED)
    assert done.returncode == 0 and "erased 1 calls" in done.stderr, done.stderr
    assert ERASED not in done.stdout + done.stderr
    assert await server.record("c-erase") is None and await server.record("c-keep") is not None
    assert await server.app[DESK].desk.transfer("c-erase") is None


async def test_calls_older_than_the_retention_period_are_erased(start_server, monkeypatch):
    from voicebot.app import REGISTRY
    from voicebot.asr.fake import FakeEngine
    from voicebot.storage.base import CallRecord

    monkeypatch.setattr("voicebot.staff.privacy.RETENTION_SWEEP_S", 0.05)
    server = await start_server(FakeEngine(), retention_days=7, knowledge_dir=KNOWLEDGE)
    store = server.app[REGISTRY].services.store
    old = CallRecord("c-old", "native", caller=KEPT, started_at=time.time() - 8 * 86400)
    await store.create(old)
    await seed_call(server, "c-new", [utterance("agent please", 0.9, 1.0)], caller=KEPT)
    for _ in range(200):
        if await server.record("c-old") is None:
            break
        await asyncio.sleep(0.02)
    assert await server.record("c-old") is None
    assert await server.record("c-new") is not None  # a day's old call stays
    assert await server.app[DESK].desk.transfer("c-new") is not None

    async def audited() -> bool:
        audit = await server.app[DESK].staff.audit_log()
        return any(row["action"] == "erase_expired" and row["detail"] == "1 calls" for row in audit)

    await wait_for(audited, what="the sweep's audit entry (written after the erasure)")
