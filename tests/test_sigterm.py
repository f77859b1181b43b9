"""SIGTERM on a real `voicebot serve` process: it stops accepting calls, hands
the calls in progress to a human, lets a handoff under way finish as it was,
writes every record and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time

import aiohttp
import numpy as np
import pytest

from voicebot.replay.client import ReplayOptions, replay

from .conftest import ROOT
from .test_cli import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


async def wait_healthy(port: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "server exited during start-up"
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail("server never became healthy")


async def test_sigterm_hands_calls_over_flushes_records_and_exits_cleanly(tmp_path):
    port, db = free_port(), tmp_path / "calls.db"
    env = {**os.environ, "VOICEBOT_DB": str(db), "VOICEBOT_SHUTDOWN_GRACE_S": "12"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_healthy(port, proc)
        url = f"ws://127.0.0.1:{port}/v1/stream"
        silence = np.zeros(8000, np.int16)
        live = ReplayOptions(speed=1, marks="played", max_call_s=40)
        talking = asyncio.create_task(replay(url, silence, 8000, live))
        # presses 0 at once: its handoff line plays from ~7.7 s (after the disclosure) to ~13 s
        leaving = asyncio.create_task(replay(url, silence, 8000, ReplayOptions(
            speed=1, marks="played", max_call_s=40, dtmf=[(0.2, "0")])))
        await asyncio.sleep(9.5)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        try:
            late = await replay(url, silence, 8000, ReplayOptions(marks="immediate", speed=0))
            late_outcome = late.outcome
        except (aiohttp.ClientConnectorError, aiohttp.WSServerHandshakeError):
            late_outcome = "refused"
        talking_result, leaving_result = await asyncio.gather(talking, leaving)
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
        exit_s = time.monotonic() - t_term
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode()
    print(f"\nSIGTERM → exit in {exit_s:.1f} s; late call: {late_outcome}")
    assert proc.returncode == 0, text
    assert "shutting down: handing 2 calls to the human line" in text
    assert late_outcome in ("refused", "handoff:shutdown")

    assert talking_result.outcome == "handoff:shutdown"
    assert talking_result.of("handoff")[0]["reason"] == "shutdown"
    prompts = [e["name"] for e in talking_result.of("prompt")]
    assert prompts[0] == "disclosure" and prompts[-1] == "handoff"
    assert leaving_result.outcome == "handoff:caller_request"  # finished as it was going
    handoff_line = next(e for e in leaving_result.of("prompt") if e["name"] == "handoff")
    handed = leaving_result.of("handoff")[0]
    assert handoff_line["t"] < 9.5 < handed["t"], "SIGTERM arrived while that handoff was playing"

    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT call_id, outcome || ':' || handoff_reason || ':' || "
                                 "(ended_at IS NOT NULL) FROM calls").fetchall())
    assert rows[talking_result.call_id] == "handoff:shutdown:1"
    assert rows[leaving_result.call_id] == "handoff:caller_request:1"
    assert not (tmp_path / "calls.db.journal").exists(), "nothing left unwritten"
