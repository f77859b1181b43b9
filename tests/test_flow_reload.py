"""A real `voicebot serve` process: SIGHUP reloads the flow without dropping
the call in progress; a broken flow is refused (at start with exit 2 and the
problem's place, on reload with the running flow kept)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from voicebot.dialog.flow import DEFAULT_FLOW

from .call_client import Caller
from .conftest import ROOT
from .test_cli import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.engine]
OLD_MENU = "How can I help you today? I can check on an order or help you reset a password."
NEW_MENU = "Welcome back. What can I do for you?"


async def health(port: int) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return await r.json() if r.status == 200 else {}


async def until(predicate, what: str, seconds: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = await predicate()
        except aiohttp.ClientError:
            value = None
        if value:
            return value
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


async def serve(flow: Path, port: int, tmp_path: Path, **extra: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "VOICEBOT_DB": str(tmp_path / "calls.db"), "VOICEBOT_FLOW": str(flow),
           "VOICEBOT_ASR_WORKERS": "1", **extra}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_sighup_reloads_the_flow_and_keeps_the_call_in_progress(tmp_path):
    flow = tmp_path / "flow.toml"
    flow.write_text(DEFAULT_FLOW.read_text())
    port = free_port()
    # with the second opinion: its sentence encoder takes the reloaded flow's examples
    proc = await serve(flow, port, tmp_path, VOICEBOT_SECOND_OPINION="whisper",
                       VOICEBOT_SECOND_OPINION_FALLBACK="off")
    try:
        await until(lambda: health(port), "the server to be healthy")
        async with Caller(f"ws://127.0.0.1:{port}", call_id="before") as before:
            assert (await before.prompt("menu"))["text"] == OLD_MENU
            flow.write_text(DEFAULT_FLOW.read_text().replace(OLD_MENU, NEW_MENU))
            proc.send_signal(signal.SIGHUP)
            await until(lambda: _reloads(port, 1), "the reload")
            async with Caller(f"ws://127.0.0.1:{port}", call_id="after") as after:
                assert (await after.prompt("menu"))["text"] == NEW_MENU
                await after.hang_up()
            await before.keys("0")  # the call that started before the reload goes on
            handoff = await before.event("handoff")
            assert handoff["reason"] == "caller_request"

            flow.write_text("[flow]\nlanguages = [\"en\"]\nstart = \"nowhere\"\n")
            proc.send_signal(signal.SIGHUP)
            async with Caller(f"ws://127.0.0.1:{port}", call_id="still") as still:
                assert (await still.prompt("menu"))["text"] == NEW_MENU
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = output.decode()
    assert "flow reloaded from" in text
    # the sentence encoder (installed with the tests) has the flow's examples at start and after the reload
    assert text.count("example sets of the flow ready") == 2, text
    assert "flow reload refused, keeping the running flow" in text and "no node named 'nowhere'" in text


async def _reloads(port: int, n: int) -> bool:
    return (await health(port)).get("flow_reloads") == n


async def test_a_broken_flow_is_refused_at_start_with_its_place(tmp_path):
    flow = tmp_path / "broken.toml"
    flow.write_text(DEFAULT_FLOW.read_text().replace('no_match = "unresolved"\nno_input = "still_there"\nqueue',
                                                     'no_input = "still_there"\nqueue', 1))
    proc = await serve(flow, free_port(), tmp_path)
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "broken.toml:" in output.decode() and "nodes.menu: an ask needs a no_match edge" in output.decode()
