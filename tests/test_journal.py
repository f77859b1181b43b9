"""The database going away loses nothing: writes are journalled to a local file
and replayed, in order, once it is back (real SQLite, real files)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from voicebot.app import STORE
from voicebot.audio.wav import read_wav
from voicebot.errors import StoreUnavailable
from voicebot.replay.client import ReplayOptions, replay
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.journal import JournalledStore
from voicebot.types import Source, Utterance, Word

from .conftest import FIXTURES


class Outage:
    """Takes the database away the way a lost mount does: the open connection
    breaks and reconnecting fails (root ignores file modes, so the directory is
    swapped for a plain file) until `restore()`."""

    def __init__(self, store: JournalledStore, db_dir: Path) -> None:
        self.store = store
        self.db_dir = db_dir
        self.away = db_dir.with_name(db_dir.name + ".away")

    async def begin(self) -> None:
        self.db_dir.rename(self.away)
        self.db_dir.write_text("not a directory")
        await self.store.inner.close()

    def restore(self) -> None:
        self.db_dir.unlink()
        self.away.rename(self.db_dir)


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def count_reconnects(store: JournalledStore) -> list[bool]:
    """Every reconnect the store tries from now on, and whether it worked."""
    attempts: list[bool] = []
    inner_open = store.inner.open

    async def open_and_count() -> None:
        try:
            await inner_open()
        except BaseException:
            attempts.append(False)
            raise
        attempts.append(True)

    store.inner.open = open_and_count
    return attempts


def utterance(text: str, start: float) -> Utterance:
    return Utterance(text, 0.91, start, start + 1.2, Source.SPEECH, "human",
                     (Word(text.split()[0], 0.9, 0.0, 0.4),))


def journalled_store(db: Path, journal: Path, **options) -> JournalledStore:
    return JournalledStore(SqlCallStore(db), journal,
                           data_errors=(sqlite3.IntegrityError, ValueError), **options)


@pytest.fixture
async def journalled(tmp_path):
    store = journalled_store(tmp_path / "db" / "calls.db", tmp_path / "local" / "calls.journal",
                             retry_s=0.05)
    await store.open()
    yield store
    await store.close()


async def test_writes_during_an_outage_are_replayed_in_order(journalled, tmp_path):
    store = journalled
    await store.create(CallRecord("before", "native", caller="+15550001", started_at=1.0))
    await store.add_utterance("before", 2.0, utterance("order status", 0.5))
    await store.flush()
    outage = Outage(store, tmp_path / "db")
    await outage.begin()
    attempts = count_reconnects(store)

    await store.update("before", outcome="handoff", handoff_reason="caller_request")
    await store.create(CallRecord("during", "twilio", gateway_call_id="CA9", started_at=3.0))
    await store.add_prompt("during", 3.5, {"name": "disclosure", "confirmed_by": "mark"})
    await store.add_utterance("during", 4.0, utterance("agent please", 1.0))
    await store.update("during", outcome="completed", ended_at=5.0)
    await store.flush()
    assert not store.up and store.pending == 5  # the first write found the outage: all five kept
    lines = (tmp_path / "local" / "calls.journal").read_text().splitlines()
    assert [json.loads(line)["op"] for line in lines] == [
        "update", "create", "prompt", "utterance", "update"]

    during = await store.get("CA9")  # a call's own record is readable from the journal
    assert during is not None and during.outcome == "completed"
    with pytest.raises(StoreUnavailable):
        await store.get("before")
    await wait_until(lambda: len(attempts) >= 3)
    assert not store.up, "still down while the directory is missing"

    outage.restore()
    await wait_until(lambda: store.up)
    assert store.pending == 0 and not (tmp_path / "local" / "calls.journal").exists()
    before, during = await store.get("before"), await store.get("during")
    assert before.outcome == "handoff" and before.handoff_reason == "caller_request"
    assert [u["text"] for u in before.utterances] == ["order status"]
    assert during.gateway_call_id == "CA9" and during.ended_at == 5.0
    assert [p["name"] for p in during.prompts] == ["disclosure"]
    assert during.utterances[0]["words"][0]["text"] == "agent"
    await store.update("during", summary="after")  # straight to the database again
    await store.flush()
    assert store.pending == 0 and (await store.inner.get("during")).summary == "after"


async def test_journal_left_by_a_crash_is_replayed_at_start_once(tmp_path):
    db, journal = tmp_path / "db" / "calls.db", tmp_path / "calls.journal"
    first = journalled_store(db, journal, retry_s=60)
    await first.open()
    outage = Outage(first, tmp_path / "db")
    await outage.begin()
    await first.create(CallRecord("c1", "native", started_at=1.0))
    for i in range(3):
        await first.add_utterance("c1", 2.0 + i, utterance(f"word{i} here", float(i)))
    await first.flush()
    # the process dies: no close(); the journal is all that is left. A replay had
    # also got as far as the first two entries (position saved) before the crash.
    assert first._recovery is not None
    first._recovery.cancel()
    outage.restore()
    entries = journal.read_bytes().splitlines(keepends=True)
    done = len(entries[0]) + len(entries[1])
    direct = SqlCallStore(db)
    await direct.open()
    await direct.create(CallRecord("c1", "native", started_at=1.0))
    await direct.add_utterance("c1", 2.0, utterance("word0 here", 0.0))
    await direct.close()
    (tmp_path / "calls.journal.pos").write_text(str(done))
    with open(journal, "ab") as f:
        f.write(b'{"op":"update","call_id":"c1","fie')  # torn write at the crash

    second = journalled_store(db, journal)
    await second.open()
    try:
        assert second.up and second.pending == 0 and not journal.exists()
        record = await second.get("c1")
        assert [u["text"] for u in record.utterances] == ["word0 here", "word1 here", "word2 here"]
    finally:
        await second.close()


async def test_a_journal_replayed_twice_stores_each_entry_once(tmp_path):
    """A crash after the replay wrote but before it saved its position (or a write
    that timed out and landed late) repeats entries: the store keeps one of each."""
    db, journal = tmp_path / "db" / "calls.db", tmp_path / "calls.journal"
    store = journalled_store(db, journal, retry_s=60)
    await store.open()
    outage = Outage(store, tmp_path / "db")
    await outage.begin()
    await store.create(CallRecord("c2", "native", started_at=1.0))
    await store.add_utterance("c2", 2.0, utterance("agent please", 0.0))
    await store.add_prompt("c2", 1.5, {"name": "disclosure", "text": "hello"})
    await store.update("c2", summary="asked for a person")
    await store.flush()
    store._recovery.cancel()
    outage.restore()
    saved = journal.read_bytes()
    first = journalled_store(db, journal)
    await first.open()  # replays everything and removes the journal...
    await first.close()
    journal.write_bytes(saved)  # ...as if the process had died before saving its position

    again = journalled_store(db, journal)
    await again.open()  # replays the whole journal a second time
    try:
        record = await again.get("c2")
        assert again.up and not journal.exists()
        assert [u["text"] for u in record.utterances] == ["agent please"]
        assert [p["name"] for p in record.prompts] == ["disclosure"]
        assert record.summary == "asked for a person"
    finally:
        await again.close()


async def test_duplicate_events_in_an_older_database_are_removed_once(tmp_path):
    db = tmp_path / "calls.db"
    store = SqlCallStore(db)
    await store.open()
    await store.create(CallRecord("c3", "native", started_at=1.0))
    # as a file from before the index and before schema versions
    await store.sql.run("DROP INDEX call_events_once")
    await store.sql.run("DROP TABLE schema_version")
    for _ in range(3):
        await store.add_utterance("c3", 2.0, utterance("agent please", 0.0))
    await store.add_utterance("c3", 3.0, utterance("thank you", 1.0))
    assert len((await store.get("c3")).utterances) == 4
    await store.close()
    await store.open()
    try:
        assert [u["text"] for u in (await store.get("c3")).utterances] == ["agent please", "thank you"]
        await store.add_utterance("c3", 2.0, utterance("agent please", 0.0))
        assert len((await store.get("c3")).utterances) == 2
    finally:
        await store.close()


async def test_data_errors_are_dropped_not_journalled(journalled, tmp_path, caplog):
    await journalled.create(CallRecord("dup", "native", caller="+15550001"))
    await journalled.create(CallRecord("dup", "native", caller="+15550002"))
    with pytest.raises(ValueError):  # found before it is queued
        await journalled.update("dup", no_such_field=1)
    await journalled.flush()
    assert "refused a create: IntegrityError (not journalled)" in caplog.text
    assert (await journalled.get("dup")).caller == "+15550001"
    assert journalled.up and journalled.pending == 0
    assert not (tmp_path / "local" / "calls.journal").exists()


@pytest.mark.e2e
async def test_a_write_to_a_connection_closed_under_it_is_journalled_not_dropped(journalled, tmp_path):
    """aiosqlite says "no active connection" with a ValueError, the type data errors
    have: a write the outage caught in flight must still be kept."""
    await journalled.create(CallRecord("c1", "native", started_at=1.0))
    await journalled.flush()
    await journalled.inner._sql._db.close()  # under the store: its next write finds it closed
    await journalled.add_utterance("c1", 2.0, utterance("agent please", 2.0))
    await journalled.flush()
    await wait_until(lambda: journalled.up and journalled.pending == 0)  # reconnected, replayed
    record = await journalled.get("c1")
    assert record is not None and [u["text"] for u in record.utterances] == ["agent please"]


async def test_calls_during_a_database_outage_lose_no_records(start_server, en_engine, tmp_path):
    server = await start_server(en_engine, db=str(tmp_path / "db" / "calls.db"),
                                journal=str(tmp_path / "local" / "calls.journal"))
    store = server.app[STORE]
    store.retry_s = 0.1
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    fast = {"marks": "immediate", "speed": 0, "max_call_s": 30}
    spanning = asyncio.create_task(replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        marks="immediate", speed=1, max_call_s=30, call_id="spanning", caller="+15550009")))
    for _ in range(100):  # the call row is in the database before the outage
        if await store.get("spanning") is not None:
            break
        await asyncio.sleep(0.05)
    outage = Outage(store, tmp_path / "db")
    await outage.begin()

    results = [await replay(server.ws + path, samples, rate, ReplayOptions(protocol=protocol, **fast))
               for protocol, path in [("native", "/v1/stream"), ("twilio", "/twilio/media")] * 3]
    results.append(await spanning)
    assert all(r.outcome == "handoff:caller_request" for r in results), [r.outcome for r in results]
    assert store.pending > 0 and not store.up
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http + "/healthz") as r:
            health = await r.json()
        twilio_sid = results[1].call_id  # the replay client's CallSid
        async with http.post(server.http + "/twilio/stream-ended", data={"CallSid": twilio_sid}) as r:
            twiml = await r.text()
        async with http.post(server.http + "/twilio/stream-ended", data={"CallSid": "CA-older"}) as r2:
            assert r2.status == 200 and "<Dial " in await r2.text()  # not readable: fail safe
    # calls still running may journal more between the two reads
    assert health["store"] == "journalling" and 0 < health["journal_pending"] <= store.pending
    assert r.status == 200 and "<Dial " in twiml  # the human line is reached during the outage

    journalled = store.pending
    outage.restore()
    await wait_until(lambda: store.up)
    lost = 0
    for result in results:
        record = await server.record(result.call_id)
        complete = (record is not None and record.outcome == "handoff"
                    and record.handoff_reason == "caller_request" and record.ended_at
                    and record.utterances and record.utterances[0]["text"] == "i want to speak to a person"
                    and record.prompts[0]["name"] == "disclosure"
                    and record.prompts[-1]["name"] == "handoff")
        lost += not complete
    print(f"\ndatabase outage: {len(results)} calls, {journalled} writes journalled, "
          f"records lost: {lost}")
    assert lost == 0


async def test_erasure_waits_for_the_database_and_the_journal(journalled, tmp_path):
    """An erasure must not be undone by journalled writes replayed after it."""
    await journalled.create(CallRecord("e1", "native", caller="+15550123"))
    await journalled.flush()
    outage = Outage(journalled, tmp_path / "db")
    await outage.begin()
    await journalled.add_utterance("e1", 2.0, utterance("agent please", 0.0))
    with pytest.raises(StoreUnavailable):
        await journalled.erase_caller("+15550123")
    outage.restore()
    await wait_until(lambda: journalled.up and journalled.pending == 0)
    assert await journalled.erase_caller("+15550123") == ["e1"]
    assert await journalled.get("e1") is None


async def test_free_form_transcripts_are_journalled_and_replayed_once(journalled, tmp_path):
    store = journalled
    item = {"start": 1.0, "end": 2.2, "text": "Weasels have eaten our phone system.",
            "status": "ok", "words": []}
    await store.create(CallRecord("c1", "native", started_at=1.0))
    await store.flush()
    outage = Outage(store, tmp_path / "db")
    await outage.begin()
    await store.add_transcript("c1", 9.0, item)
    await store.add_transcript("c1", 9.0, item)  # a repeated write is stored once
    await store.flush()
    assert store.pending == 2
    outage.restore()
    await wait_until(lambda: store.up)
    record = await store.get("c1")
    assert record.transcripts == [{"at": 9.0, **item}] and record.prompts == []
