"""PostgreSQL stopped while calls are in progress: every call still ends with
a person, the worker journals what it could not write, and replays it into the
server once it is back; no record is lost."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from voicebot.app import STORE
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES
from .servers import Postgres, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture
def own_cluster():
    """A cluster of this test's own: it is stopped and started again."""
    cluster = Postgres()
    cluster.start()
    yield cluster
    cluster.remove()


async def test_calls_during_a_postgres_outage_end_with_a_person_and_lose_no_records(
        start_server, en_engine, own_cluster, tmp_path):
    server = await start_server(en_engine, db=own_cluster.url(), db_timeout_s=2.0,
                                journal=str(tmp_path / "worker.journal"),
                                key_file=str(tmp_path / "worker.key"))
    store = server.app[STORE]
    store.retry_s = 0.2
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    spanning = asyncio.create_task(replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        marks="immediate", speed=1, max_call_s=30, call_id="spanning", caller="+15550009")))
    await wait_for(lambda: store.get("spanning"), what="the call row in PostgreSQL")
    await asyncio.to_thread(own_cluster.stop)  # mid-call

    fast = ReplayOptions(marks="immediate", speed=0, max_call_s=30)
    results = [await replay(server.ws + "/v1/stream", samples, rate, fast) for _ in range(3)]
    results.append(await spanning)
    assert [r.outcome for r in results] == ["handoff:caller_request"] * 4
    assert not store.up and store.pending > 0
    async with aiohttp.ClientSession() as http, http.get(server.http + "/healthz") as r:
        health = await r.json()
    assert health["store"] == "journalling" and health["journal_pending"] > 0

    journalled = store.pending
    await asyncio.to_thread(own_cluster.start)
    await wait_for(lambda: store.up and store.pending == 0, timeout=30, what="the replay")
    lost = 0
    for result in results:
        record = await server.record(result.call_id)
        lost += not (record is not None and record.outcome == "handoff"
                     and record.handoff_reason == "caller_request" and record.ended_at
                     and record.utterances[0]["text"] == "i want to speak to a person"
                     and record.prompts[0]["name"] == "disclosure"
                     and record.prompts[-1]["name"] == "handoff")
    print(f"\nPostgreSQL outage: {len(results)} calls, {journalled} writes journalled, "
          f"records lost: {lost}")
    assert lost == 0
    assert not (tmp_path / "worker.journal").exists()  # replayed, then removed
