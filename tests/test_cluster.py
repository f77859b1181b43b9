"""Several workers, one deployment: real `voicebot serve` processes on one
PostgreSQL database and one Redis (both started by the tests).

- A transfer decided on worker A reaches a desk connected to worker B, live.
- Log-in misses count across workers.
- A worker told to stop (SIGTERM, `VOICEBOT_DRAIN_S`) says so on /healthz
  (503 "draining"), takes no new bot conversation, finishes the call it has,
  then exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.staff.shared import SharedThrottle, connect
from voicebot.staff.throttle import LoginThrottle

from .conftest import FIXTURES, ROOT, STAFF_TOKEN
from .servers import free_port, wait_for
from .test_sigterm import wait_healthy
from .test_staff_feed import BEARER, next_event

SECRET = "cluster-test-secret-shared-by-every-worker-0123456789"


async def start_worker(tmp_path: Path, name: str, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    environment = {**os.environ, "VOICEBOT_PORT": str(port), "VOICEBOT_STAFF_TOKEN": STAFF_TOKEN,
                   "VOICEBOT_SECRET_KEY": SECRET, "VOICEBOT_ASR_WORKERS": "1",
                   "VOICEBOT_JOURNAL": str(tmp_path / f"{name}.journal"), **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "serve", cwd=ROOT, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await wait_healthy(port, proc)
    return proc, f"127.0.0.1:{port}"


async def stop(*procs: asyncio.subprocess.Process) -> list[str]:
    outputs = []
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
        outputs.append(out.decode())
    return outputs


@pytest.mark.e2e
@pytest.mark.engine
async def test_a_transfer_on_worker_a_reaches_a_desk_on_worker_b(
        postgres_url, redis_server, tmp_path):
    shared = {"VOICEBOT_DB": postgres_url, "VOICEBOT_REDIS_URL": redis_server.url}
    (a, host_a), (b, host_b) = await asyncio.gather(start_worker(tmp_path, "a", **shared),
                                                    start_worker(tmp_path, "b", **shared))
    try:
        samples, rate = read_wav(FIXTURES / "en_human_person.wav")
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://{host_b}/api/feed", headers=BEARER) as feed:
            await next_event(feed, "ready")
            call = asyncio.create_task(replay(f"ws://{host_a}/v1/stream", samples, rate,
                                              ReplayOptions(speed=2, max_call_s=60)))
            message = await asyncio.wait_for(next_event(feed, "transfer"), 60)
            received = time.time()
            result = await call
            async with http.get(f"http://{host_b}/api/transfers", headers=BEARER) as r:
                queue = await r.json()
    finally:
        await stop(a, b)
    transfer = message["transfer"]
    latency = received - transfer["decided_at"]
    print(f"\ntransfer on worker A → desk on worker B: {latency * 1000:.1f} ms")
    assert transfer["call_id"] == result.call_id and result.outcome == "handoff:caller_request"
    assert transfer["caller"] == "+15550123" and transfer["reason"] == "caller_request"
    assert 0 <= latency < 1.0, f"the desk on B saw the transfer {latency:.3f} s after A decided it"
    # and from the shared database, B's queue holds the call A took
    assert [t["call_id"] for t in queue["transfers"]] == [result.call_id]


async def test_log_in_misses_count_across_workers_and_locally_without_redis(redis_server):
    rule = {"free": 2, "base_s": 30, "max_s": 60, "forget_s": 900}
    one, two = (connect(redis_server.url), connect(redis_server.url))
    worker_a, worker_b = SharedThrottle(one, LoginThrottle(**rule)), SharedThrottle(two, LoginThrottle(**rule))
    try:
        await worker_a.failed("192.0.2.7")
        await worker_b.failed("192.0.2.7")  # the second miss, on the other worker
        assert await worker_a.retry_after("192.0.2.7") > 25  # both count: the wait has begun
        assert await worker_b.retry_after("198.51.100.1") == 0
        redis_server.remove()  # Redis gone: each worker counts on its own, and says so
        await worker_a.failed("203.0.113.9")
        await worker_a.failed("203.0.113.9")
        assert await worker_a.retry_after("203.0.113.9") > 25
        assert await worker_b.retry_after("203.0.113.9") == 0
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.e2e
@pytest.mark.engine
async def test_a_draining_worker_finishes_its_call_and_sends_new_ones_to_a_person(tmp_path):
    proc, host = await start_worker(tmp_path, "draining", VOICEBOT_DB=str(tmp_path / "calls.db"),
                                    VOICEBOT_DRAIN_S="60")
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    try:
        async with aiohttp.ClientSession() as http:
            async def health() -> tuple[int, dict]:
                async with http.get(f"http://{host}/healthz") as r:
                    return r.status, await r.json()

            talking = asyncio.create_task(replay(f"ws://{host}/v1/stream", samples, rate,
                                                 ReplayOptions(speed=1, max_call_s=60)))
            await wait_for(lambda: _calls(health), timeout=30, what="the call in progress")
            proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: _draining(health), timeout=10, what="/healthz 503 draining")
            status, body = await health()
            late = await replay(f"ws://{host}/v1/stream", samples, rate,
                                ReplayOptions(speed=0, marks="immediate", max_call_s=30))
            assert proc.returncode is None  # still serving its call
            result = await talking
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert status == 503 and body["status"] == "draining"
    assert late.outcome == "handoff:shutdown"  # straight to a person, never silence
    assert result.outcome == "handoff:caller_request"  # finished as it would have anyway
    assert proc.returncode == 0, text
    assert "drained: every call has ended" in text


async def _calls(health) -> bool:
    status, body = await health()
    return status == 200 and body["calls"] >= 1


async def _draining(health) -> bool:
    status, body = await health()
    return status == 503 and body.get("status") == "draining"


@pytest.mark.e2e
@pytest.mark.engine
async def test_with_redis_unreachable_a_workers_own_desk_still_sees_its_transfers(
        start_server, en_engine):
    server = await start_server(en_engine, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    async with aiohttp.ClientSession() as http, \
            http.get(server.http + "/api/feed", headers=BEARER) as feed:
        await next_event(feed, "ready")
        result = await replay(server.ws + "/v1/stream", samples, rate,
                              ReplayOptions(speed=0, marks="immediate", max_call_s=60))
        message = await asyncio.wait_for(next_event(feed, "transfer"), 30)
    assert message["transfer"]["call_id"] == result.call_id
    assert result.outcome == "handoff:caller_request"
