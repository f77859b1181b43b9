"""The storage suite, run against both backends: the SQLite file and a real
PostgreSQL server the tests start (`tests/servers.py`). Every store the
server uses (calls, sealed calls, desk, staff, opt-outs, call labels, the
reports' reader) and the migrations behave the same on each."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from voicebot.errors import ConfigError
from voicebot.ops.calls import SqlCallSource
from voicebot.ops.tags import TagStore
from voicebot.privacy.crypto import FieldPrivacy
from voicebot.privacy.keys import KeySet, new_root
from voicebot.storage.backends import data_errors, display, is_server, open_sql
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.desk import DeskStore, Feedback
from voicebot.storage.migrations import latest
from voicebot.storage.optout import OptOutStore
from voicebot.storage.sealed import SealedCallStore
from voicebot.storage.sql import rows
from voicebot.storage.staff import StaffStore

from .staff_helpers import utterance

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "calls.db")
    return await request.getfixturevalue("postgres_cluster").new_database()


async def opened(*stores):
    for store in stores:
        await store.open()
    return stores


async def closed(*stores) -> None:
    for store in stores:
        await store.close()


async def test_call_store_round_trip(db):
    store = SqlCallStore(db)
    await store.open()
    try:
        await store.create(CallRecord("c1", "twilio", gateway_call_id="CA1", caller="p-1",
                                      started_at=T0))
        await store.add_prompt("c1", T0 + 1, {"name": "disclosure", "text": "I am a bot"})
        await store.add_utterance("c1", T0 + 2, utterance("agent please", 0.9, 1.0))
        await store.add_utterance("c1", T0 + 2, utterance("agent please", 0.9, 1.0))  # a repeat
        await store.add_transcript("c1", T0 + 3, {"text": "agent please", "words": []})
        await store.update("c1", outcome="handoff", handoff_reason="caller_request",
                           ended_at=T0 + 5, summary="asked for a person")
        record = await store.get("CA1")  # by the gateway's id too
        assert record is not None and record.call_id == "c1"
        assert (record.outcome, record.handoff_reason, record.ended_at) == (
            "handoff", "caller_request", T0 + 5)
        assert [u["text"] for u in record.utterances] == ["agent please"]
        assert record.utterances[0]["words"][0]["text"] == "agent"
        assert [p["name"] for p in record.prompts] == ["disclosure"]
        assert record.transcripts[0]["at"] == T0 + 3
        await store.update("c1", recording_consent="given", survey="rated", csat=4)  # version 3
        record = await store.get("c1")
        assert record is not None and (record.recording_consent, record.survey, record.csat) == (
            "given", "rated", 4)
        assert await store.get("nobody") is None
        with pytest.raises(ValueError):
            await store.update("c1", no_such_field=1)
        with pytest.raises(data_errors(db)):  # a data error, which the journal never keeps
            await store.create(CallRecord("c1", "native"))
        await store.create(CallRecord("c2", "native", caller="p-1", started_at=T0 - 10))
        assert [r.call_id for r in await store.calls_of_caller("p-1")] == ["c2", "c1"]
        assert await store.claim_meta("key_check", "first") == "first"
        assert await store.claim_meta("key_check", "second") == "first"
    finally:
        await store.close()


async def test_erasure_and_retention_take_events_and_labels_along(db):
    store, tags = await opened(SqlCallStore(db), TagStore(db))
    try:
        for call_id, caller, started in (("old", "p-a", T0 - 100), ("new", "p-a", T0),
                                         ("other", "p-b", T0)):
            await store.create(CallRecord(call_id, "native", caller=caller, started_at=started))
            await store.add_utterance(call_id, started + 1, utterance("hello", 0.9, 0.0))
            await tags.put(call_id, "line", "narrowband")
        await tags.put("other", "line", "wideband")  # an upsert
        assert await store.erase_started_before(T0 - 50) == ["old"]
        assert sorted(await store.erase_caller("p-a")) == ["new"]
        left = await rows(store.sql, "SELECT call_id, key, value FROM call_tags")
        assert left == [{"call_id": "other", "key": "line", "value": "wideband"}]
        events = await rows(store.sql, "SELECT DISTINCT call_id FROM call_events")
        assert [e["call_id"] for e in events] == ["other"]
    finally:
        await closed(tags, store)


async def test_key_rotation_rewrites_every_row_in_one_transaction(db):
    store, desk = await opened(SqlCallStore(db), DeskStore(db))
    try:
        await store.create(CallRecord("c1", "native", summary="old:s", started_at=T0))
        await store.add_prompt("c1", T0, {"name": "menu", "text": "old:p"})
        await store.claim_meta("key_check", "old:k")
        await desk.add_transfer("c1", "caller_request", "old:summary", "old:caller", "en", 0.1, T0)
        renamed = await store.rewrite(
            lambda row: {**row, "summary": row["summary"].replace("old:", "new:")},
            lambda kind, item: {**item, "text": item["text"].replace("old:", "new:")},
            lambda value: value.replace("old:", "new:"))
        await desk.rewrite(lambda value: value.replace("old:", "new:"))
        assert renamed == 1
        record = await store.get("c1")
        assert record.summary == "new:s" and record.prompts[0]["text"] == "new:p"
        assert await store.claim_meta("key_check", "x") == "new:k"
        transfer = await desk.transfer("c1")
        assert (transfer["summary"], transfer["caller"]) == ("new:summary", "new:caller")

        def fail(row):
            raise RuntimeError("the new key is unusable")
        with pytest.raises(RuntimeError):
            await store.rewrite(fail, lambda kind, item: item, lambda value: value)
        assert (await store.get("c1")).summary == "new:s"  # nothing half-done
    finally:
        await closed(desk, store)


async def test_sealed_store_keeps_numbers_and_words_out_of_either_backend(db):
    privacy = FieldPrivacy(KeySet(new_root()))
    store = SealedCallStore(SqlCallStore(db), privacy)
    await store.open()
    try:
        await store.create(CallRecord("s1", "native", caller="+15550190", started_at=T0))
        await store.add_utterance("s1", T0 + 1, utterance("card 4111111111111111", 0.8, 1.0))
        await store.update("s1", summary="asked about card")
        record = await store.get("s1")
        assert record.caller == "+15550190" and record.summary == "asked about card"
        assert record.utterances[0]["text"] == "card [CARD]"
        assert [r.call_id for r in await store.calls_of_caller("+1 555 0190")] == ["s1"]
        raw = await rows(store.inner.sql, "SELECT caller, caller_sealed, summary FROM calls")
        payloads = await rows(store.inner.sql, "SELECT payload FROM call_events")
        stored = repr(raw) + repr(payloads)
        assert "5550190" not in stored and "asked about card" not in stored and "card" not in stored
    finally:
        await store.close()
    again = SealedCallStore(SqlCallStore(db), FieldPrivacy(KeySet(new_root())))
    with pytest.raises(ConfigError, match="stored data was encrypted with key"):  # refused
        await again.open()


async def test_desk_queue_claims_feedback_and_reports(db):
    store, desk = await opened(SqlCallStore(db), DeskStore(db))
    try:
        for i, outcome in enumerate(("handoff", "handoff", "completed")):
            await store.create(CallRecord(f"d{i}", "native", language="en", started_at=T0 + i,
                                          outcome=outcome, handoff_reason="caller_request"
                                          if outcome == "handoff" else ""))
        await desk.add_transfer("d0", "caller_request", "sum", "+1555", "en", -0.2, T0)
        await desk.add_transfer("d0", "caller_request", "again", "+1555", "en", -0.2, T0)
        await desk.add_transfer("d1", "caller_request", "sum1", "+1556", "en", 0.0, T0 + 1)
        assert [t["call_id"] for t in await desk.queue()] == ["d0", "d1"]
        claims = await asyncio.gather(desk.claim("d0", "ann"), desk.claim("d0", "bob"))
        assert sorted(claims) == [False, True]  # one agent gets it
        assert await desk.needs_callback("d1") and await desk.claim("d1", "bob")
        assert await desk.dispose("d1", "resolved", "called back")
        assert not await desk.dispose("d1", "resolved", "twice")
        first = await desk.add_feedback(Feedback("d0", "ann", "transcript_wrong", 0, "x", "y"))
        second = await desk.add_feedback(Feedback("d1", "bob", "reviewed_ok"))
        assert second > first > 0
        feedback = await desk.feedback()
        assert [(f["user"], f["language"]) for f in feedback] == [("ann", "en"), ("bob", "en")]
        await desk.add_delivery("transfer.created", "d0", 3, False, "HTTP 503")
        assert (await desk.deliveries(failed_only=True))[0]["attempts"] == 3
        listed = await desk.list_calls({"outcome": "handoff"}, limit=10)
        assert [c["call_id"] for c in listed] == ["d1", "d0"]
        mine = await desk.list_calls({}, visible_to="ann")
        assert [c["call_id"] for c in mine] == ["d0"]  # claimed by ann; d1 is closed
        assert await desk.handoff_reasons(T0 - 1, T0 + 10) == {"caller_request": 2}
        assert await desk.outcomes(T0 - 1, T0 + 10) == {"handoff": 2, "completed": 1}
        assert len(await desk.disclosure_records(T0 - 1)) == 3
        await desk.erase_calls(["d0"])
        assert await desk.transfer("d0") is None and len(await desk.feedback()) == 1
    finally:
        await closed(desk, store)


async def test_staff_accounts_credentials_and_audit(db):
    (staff,) = await opened(StaffStore(db))
    try:
        await staff.add_user("ann", "supervisor", "hash")
        token_id = await staff.add_credential("t1", "ann", "api", "ci")
        assert token_id > 0
        await staff.add_credential("s1", "ann", "session", expires_at=time.time() + 60)
        await staff.add_credential("s0", "ann", "session", expires_at=time.time() - 1)
        who, kind = await staff.user_for_token("t1")
        assert (who.name, who.role, kind) == ("ann", "supervisor", "api")
        assert await staff.user_for_token("s0") is None  # expired
        assert [c["user"] for c in await staff.credentials("ann")] == ["ann"]
        await staff.audit("ann", "supervisor", "login", "c1", "detail")
        assert (await staff.audit_log("c1"))[0]["user"] == "ann"
        assert await staff.set_user("ann", disabled=True)
        assert (await staff.user("ann")).disabled
        assert await staff.user_for_token("s1") is None and not await staff.credentials("ann")
        with pytest.raises(ValueError):
            await staff.add_user("eve", "root")
    finally:
        await staff.close()


async def test_opt_outs(db):
    (opt_outs,) = await opened(OptOutStore(db))
    try:
        assert await opt_outs.add("p-1", "c1") and not await opt_outs.add("p-1", "c2")
        assert await opt_outs.has("p-1") and await opt_outs.all() == {"p-1"}
        assert await opt_outs.remove("p-1") and not await opt_outs.has("p-1")
    finally:
        await opt_outs.close()


async def test_reports_read_either_backend(db):
    store, desk, tags = await opened(SqlCallStore(db), DeskStore(db), TagStore(db))
    try:
        await store.create(CallRecord("r1", "native", language="ko", started_at=T0,
                                      outcome="completed", ended_at=T0 + 30))
        await store.add_utterance("r1", T0 + 1, utterance("yes", 0.9, 1.0))
        await tags.put("r1", "line", "wideband")
        await desk.add_feedback(Feedback("r1", "ann", "transcript_wrong", 0, "yes", "no"))
    finally:
        await closed(tags, desk, store)
    (facts,) = await SqlCallSource(db).calls(T0 - 1, T0 + 1)
    assert (facts.call_id, facts.language, facts.handle_s) == ("r1", "ko", 30.0)
    assert facts.turns[0].text == "yes" and facts.turns[0].correction == "no"
    assert facts.labels == {"line": "wideband"} and facts.reviewed


async def test_migrations_are_versioned_and_applied_once(db):
    first, second = await asyncio.gather(open_sql(db), open_sql(db))  # workers starting together
    try:
        versions = await rows(first, "SELECT version FROM schema_version ORDER BY version")
        assert [v["version"] for v in versions] == list(range(1, latest() + 1))
        indexes = ("SELECT indexname AS name FROM pg_indexes" if is_server(db)
                   else "SELECT name FROM sqlite_master WHERE type = 'index'")
        assert "calls_started" in {r["name"] for r in await rows(second, indexes)}
    finally:
        await first.close()
        await second.close()


async def test_an_unversioned_sqlite_file_is_adopted_then_upgraded(tmp_path):
    """A file from before versioning: no caller_sealed column, repeated events."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript("""
            CREATE TABLE calls (call_id TEXT PRIMARY KEY, gateway, gateway_call_id, stream_id,
                caller, language, started_at, ended_at, disclosure_text, disclosure_started_at,
                disclosure_played_at, disclosure_confirmed_by, outcome, handoff_reason,
                handoff_target, summary);
            CREATE TABLE call_events (call_id TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL);
            INSERT INTO calls (call_id, gateway, started_at) VALUES ('c1', 'native', 1.0);
            INSERT INTO call_events (call_id, at, kind, payload) VALUES
                ('c1', 2.0, 'prompt', '{"name": "disclosure"}'),
                ('c1', 2.0, 'prompt', '{"name": "disclosure"}');
        """)
    store = SqlCallStore(path)
    await store.open()
    try:
        record = await store.get("c1")
        assert record.caller_sealed is None or record.caller_sealed == ""
        assert [p["name"] for p in record.prompts] == ["disclosure"]
        versions = await rows(store.sql, "SELECT version FROM schema_version ORDER BY version")
        assert [v["version"] for v in versions] == list(range(1, latest() + 1))
        tables = {r["name"] for r in await rows(
            store.sql, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"desk_transfers", "staff_users", "caller_opt_outs", "call_tags",
                "store_meta"} <= tables
    finally:
        await store.close()


def test_both_backends_make_the_same_tables_and_columns():
    """Each migration exists for both backends and names the same tables."""
    import re

    from voicebot.storage.migrations import steps

    def tables(dialect: str) -> dict[int, set[str]]:
        return {s.version: set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", s.sql))
                for s in steps(dialect)}
    assert tables("sqlite") == tables("postgresql")
    assert {"calls", "call_events", "store_meta", "call_tags", "caller_opt_outs",
            "desk_transfers", "staff_audit"} <= tables("sqlite")[1]


def test_a_database_url_is_logged_without_its_password():
    assert display("postgresql://bot:hunter2@db:5432/voicebot") == "postgresql://bot:***@db:5432/voicebot"
    assert display("var/voicebot.db") == "var/voicebot.db"
    assert is_server("postgres://db/x") and not is_server("var/x.db")


def test_placeholders_are_numbered_outside_quoted_literals():
    from voicebot.storage.postgres import numbered

    assert numbered("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == \
        "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)"
    assert numbered("UPDATE t SET note = 'why?' WHERE k = ? AND s = 'it''s ?'") == \
        "UPDATE t SET note = 'why?' WHERE k = $1 AND s = 'it''s ?'"
