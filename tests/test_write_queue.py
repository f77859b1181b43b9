"""Storage off the call's path: writes are queued, a slow or full queue goes
to the journal, and a call never waits for its record to be written."""

from __future__ import annotations

import asyncio
import json

from voicebot.asr.fake import FakeEngine
from voicebot.call.fake_channel import FakeChannel
from voicebot.storage.base import CallRecord
from voicebot.storage.fake import FakeCallStore
from voicebot.storage.journal import JournalledStore
from voicebot.types import Transcript

from .session_kit import LINE_RATE
from .test_journal import utterance, wait_until


async def queued_store(tmp_path, inner: FakeCallStore, **options) -> JournalledStore:
    store = JournalledStore(inner, tmp_path / "calls.journal", retry_s=0.02, **options)
    await store.open()
    return store


async def test_writes_return_at_once_and_reach_a_slow_database_in_order(tmp_path):
    inner = FakeCallStore(delay_s=0.05)
    store = await queued_store(tmp_path, inner)
    try:
        await store.create(CallRecord("c1", "native", caller="+15550001"))
        await store.add_utterance("c1", 2.0, utterance("agent please", 0.0))
        await store.update("c1", outcome="handoff", handoff_reason="caller_request")
        assert inner.writes == [] and store.queued >= 2  # all three accepted, none written yet
        record = await store.get("c1")  # a call's own writes are readable at once
        assert record.outcome == "handoff" and record.utterances[0]["text"] == "agent please"
        await store.flush()
        assert inner.writes == [("create", "c1"), ("utterance", "c1"), ("update", "c1")]
        assert (await store.get("c1")).outcome == "handoff" and store.up and store.pending == 0
    finally:
        await store.close()


async def test_a_full_queue_spills_to_the_journal_in_order_and_is_replayed(tmp_path):
    inner = FakeCallStore()
    store = await queued_store(tmp_path, inner, queue_size=3)
    try:
        inner.hold()  # the database stops answering, without failing
        await store.create(CallRecord("c1", "native"))
        for i in range(5):
            await store.add_prompt("c1", 1.0 + i, {"name": f"p{i}"})
        await store.flush()  # not blocked by the database: the overflow went to the journal
        lines = [json.loads(line) for line in (tmp_path / "calls.journal").read_text().splitlines()]
        assert [e["op"] for e in lines] == ["create"] + ["prompt"] * 5
        assert not store.up and store.pending == 6 and inner.writes == []
        assert [p["name"] for p in (await store.get("c1")).prompts] == [f"p{i}" for i in range(5)]

        inner.release()
        await wait_until(lambda: store.up)
        record = await inner.get("c1")
        assert [p["name"] for p in record.prompts] == [f"p{i}" for i in range(5)]
        assert not (tmp_path / "calls.journal").exists()
        await store.update("c1", outcome="completed")
        await store.flush()
        assert (await inner.get("c1")).outcome == "completed"
    finally:
        await store.close()


async def test_writes_made_while_the_journal_replays_wait_for_nothing(tmp_path):
    inner = FakeCallStore(fail=OSError("database gone"))
    store = await queued_store(tmp_path, inner)
    try:
        await store.create(CallRecord("c1", "native"))
        await store.flush()
        assert store.pending == 1
        inner.fail, inner.delay_s = None, 0.5  # back, but slow: the replay takes a while
        await wait_until(lambda: inner.started > 0)  # replaying
        await store.update("c1", outcome="completed")  # queued and journalled meanwhile
        await store.flush()
        assert store.pending >= 1 and inner.writes == []
        await wait_until(lambda: store.up)
        assert inner.writes == [("create", "c1"), ("update", "c1")]
    finally:
        await store.close()


async def test_erasure_runs_after_the_writes_queued_before_it(tmp_path):
    inner = FakeCallStore(delay_s=0.02)
    store = await queued_store(tmp_path, inner)
    try:
        await store.create(CallRecord("e1", "native", caller="+15550123"))
        await store.add_utterance("e1", 2.0, utterance("agent please", 0.0))
        assert await store.erase_caller("+15550123") == ["e1"]
        assert await store.get("e1") is None
    finally:
        await store.close()


async def test_close_stores_or_journals_every_write(tmp_path):
    inner = FakeCallStore()
    store = await queued_store(tmp_path, inner, timeout_s=0.2)
    inner.hold()
    await store.create(CallRecord("c1", "native"))
    await store.update("c1", outcome="abandoned")
    await store.close()  # the database never answered: the journal has both
    ops = [json.loads(line)["op"] for line in (tmp_path / "calls.journal").read_text().splitlines()]
    assert ops == ["create", "update"]


# --- a call on a slow database --------------------------------------------------------------

async def test_a_whole_call_runs_while_no_write_completes(kit, tmp_path):
    """The disclosure, a turn, the handoff line and the transfer, with a database
    that has not finished one write: nothing on the call's path waits for one."""
    inner = FakeCallStore()
    store = await queued_store(tmp_path, inner)
    inner.hold()
    try:
        call = await kit.start_call(FakeEngine([Transcript("i want to speak to a person", 0.95)]),
                                    store=store)
        await call.prompted("menu")
        call.speak()
        record = await call.ended()
        assert inner.writes == [] and inner.started >= 1
        assert call.channel.prompts() == ["disclosure", "menu", "handoff"]
        assert call.channel.end_reason == "handoff:caller_request"
        assert record.outcome == "handoff" and record.ended_at  # readable from the queue
        inner.release()
        await store.flush()
        await wait_until(lambda: store.up)
        stored = await inner.get("c1")
        assert stored.handoff_reason == "caller_request" and stored.ended_at
        assert stored.prompts == record.prompts and stored.utterances == record.utterances
        assert [p["name"] for p in stored.prompts][::len(stored.prompts) - 1] == ["disclosure", "handoff"]
    finally:
        inner.release()
        await store.close()


async def test_two_seconds_per_write_delay_no_prompt_handoff_or_mark(kit, tmp_path):
    """Each effect is measured from its cause (channel timestamps): a write that
    was waited for would add 2 s; benchmarks/slow_store.py prints the figures."""
    inner = FakeCallStore(delay_s=2.0)
    store = await queued_store(tmp_path, inner)
    try:
        call = await kit.start_call(FakeEngine([Transcript("i want to speak to a person", 0.95)]),
                                    store=store, channel=FakeChannel(LINE_RATE, marks="keep"))
        delays = await measured_call(call)
        assert max(delays.values()) < 1.0, delays  # far below one write
        assert len(inner.writes) <= 1  # the call was over before the second write was
    finally:
        inner.delay_s = 0  # the rest is stored at once
        await store.close()


async def measured_call(call) -> dict[str, float]:
    """Delays (s) from cause to effect on one call: the disclosure's first audio
    after the call starts, the menu after the disclosure's mark is echoed, the
    handoff line after the caller's words, the transfer after its mark."""
    sent, channel = call.channel.sent, call.channel
    started = asyncio.get_running_loop().time()
    first_audio = await channel.wait_for("audio")
    mark = await channel.wait_for("mark")
    echoed = asyncio.get_running_loop().time()
    channel.echo(mark[2])
    menu = await call.prompted("menu")
    menu_mark = await channel.wait_for("mark", after=menu)
    channel.echo(menu_mark[2])
    call.speak()
    heard = await channel.wait_for("event", lambda e: e.get("event") == "transcript")
    handoff = await call.prompted("handoff")
    handoff_mark = await channel.wait_for("mark", after=handoff)
    ack = asyncio.get_running_loop().time()
    channel.echo(handoff_mark[2])
    end = await channel.wait_for("end")
    await call.ended()
    return {
        "disclosure": first_audio[0] - started,
        "menu after mark": sent[menu][0] - echoed,
        "handoff after words": sent[handoff][0] - heard[0],
        "transfer after mark": end[0] - ack,
    }
