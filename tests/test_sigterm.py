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


class Output:
    """The server's output as it comes, with an event for the first line containing `wanted`."""

    def __init__(self, proc: asyncio.subprocess.Process, wanted: str) -> None:
        self.lines: list[str] = []
        self.seen = asyncio.Event()
        self._task = asyncio.create_task(self._read(proc, wanted))

    async def _read(self, proc: asyncio.subprocess.Process, wanted: str) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace"))
            if wanted in self.lines[-1]:
                self.seen.set()

    async def text(self) -> str:
        await self._task
        return "".join(self.lines)


async def test_sigterm_hands_calls_over_flushes_records_and_exits_cleanly(tmp_path):
    port, db = free_port(), tmp_path / "calls.db"
    env = {**os.environ, "VOICEBOT_DB": str(db), "VOICEBOT_SHUTDOWN_GRACE_S": "12"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = Output(proc, "shutting down: handing")
    loop = asyncio.get_running_loop()
    handoff_line_started: list[tuple[float, float]] = []  # (the call's clock, the loop's)
    handoff_playing = asyncio.Event()

    def watch(event: dict) -> None:
        if event["event"] == "prompt" and event["name"] == "handoff":
            handoff_line_started.append((event["t"], loop.time()))
            handoff_playing.set()

    try:
        await wait_healthy(port, proc)
        url = f"ws://127.0.0.1:{port}/v1/stream"
        silence = np.zeros(8000, np.int16)
        live = ReplayOptions(speed=1, marks="played", max_call_s=40)
        talking = asyncio.create_task(replay(url, silence, 8000, live))
        # presses 0 at once: its handoff line plays after the disclosure, for seconds
        leaving = asyncio.create_task(replay(url, silence, 8000, ReplayOptions(
            speed=1, marks="played", max_call_s=40, dtmf=[(0.2, "0")], on_event=watch)))
        await asyncio.wait_for(handoff_playing.wait(), 60)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        line_t, line_seen = handoff_line_started[0]
        term_on_call_clock = line_t + (loop.time() - line_seen)
        await asyncio.wait_for(output.seen.wait(), 30)  # draining: new calls go to a person
        try:
            late = await replay(url, silence, 8000, ReplayOptions(marks="immediate", speed=0))
            late_outcome = late.outcome
        except (aiohttp.ClientConnectorError, aiohttp.WSServerHandshakeError):
            late_outcome = "refused"
        talking_result, leaving_result = await asyncio.gather(talking, leaving)
        await asyncio.wait_for(proc.wait(), 30)
        exit_s = time.monotonic() - t_term
        text = await asyncio.wait_for(output.text(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    print(f"\nSIGTERM → exit in {exit_s:.1f} s; late call: {late_outcome}")
    assert proc.returncode == 0, text
    assert "shutting down: handing 2 calls to the human line" in text
    assert late_outcome in ("refused", "handoff:shutdown")

    assert talking_result.outcome == "handoff:shutdown"
    assert talking_result.of("handoff")[0]["reason"] == "shutdown"
    prompts = [e["name"] for e in talking_result.of("prompt")]
    assert prompts[0] == "disclosure" and prompts[-1] == "handoff"
    assert leaving_result.outcome == "handoff:caller_request"  # finished as it was going
    handed = leaving_result.of("handoff")[0]
    assert term_on_call_clock < handed["t"], "SIGTERM arrived while that handoff was playing"

    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT call_id, outcome || ':' || handoff_reason || ':' || "
                                 "(ended_at IS NOT NULL) FROM calls").fetchall())
    assert rows[talking_result.call_id] == "handoff:shutdown:1"
    assert rows[leaving_result.call_id] == "handoff:caller_request:1"
    assert not (tmp_path / "calls.db.journal").exists(), "nothing left unwritten"


async def test_more_signals_during_the_shutdown_do_not_cut_it_short(tmp_path):
    """A second SIGTERM (a process manager and `timeout` both sending one, or a
    whole process group stopped) used to abort the handover and the store's close
    half way, leaving the process alive on the store's threads. Now it is logged
    and the shutdown finishes: the call is handed over, written, and the process exits 0."""
    port, db = free_port(), tmp_path / "calls.db"
    env = {**os.environ, "VOICEBOT_DB": str(db), "VOICEBOT_SHUTDOWN_GRACE_S": "30"}  # disclosure and handoff play out
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = Output(proc, "shutting down: handing")
    listening = asyncio.Event()

    def watch(event: dict) -> None:
        if event["event"] == "prompt" and event["name"] == "disclosure":
            listening.set()

    try:
        await wait_healthy(port, proc)
        call = asyncio.create_task(replay(f"ws://127.0.0.1:{port}/v1/stream", np.zeros(8000, np.int16), 8000,
                                          ReplayOptions(speed=1, marks="played", max_call_s=40, on_event=watch)))
        await asyncio.wait_for(listening.wait(), 60)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(output.seen.wait(), 30)
        proc.send_signal(signal.SIGTERM)
        result = await call
        await asyncio.wait_for(proc.wait(), 60)
        text = await asyncio.wait_for(output.text(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, text
    assert "already stopping" in text
    assert result.outcome == "handoff:shutdown"
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT call_id, outcome || ':' || handoff_reason FROM calls").fetchall())
    assert rows[result.call_id] == "handoff:shutdown"
