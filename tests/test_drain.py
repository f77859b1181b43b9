"""Drain's own decisions, on a registry whose call never ends (the real worker's
drain, with calls and a load balancer's view of /healthz, is in test_cluster.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from voicebot import drain as drain_module
from voicebot.drain import Drain

from .conftest import ROOT


class StuckRegistry:
    """One call in progress that never ends."""

    def __init__(self) -> None:
        self.sessions = {"c1": object()}
        self.draining = False

    async def changed(self) -> None:
        await asyncio.Event().wait()


async def test_drain_time_over_stops_the_server_with_the_call_still_in_progress(monkeypatch, caplog):
    stops: list[str] = []
    stopped = asyncio.Event()

    def stop() -> None:
        stops.append("stop")
        stopped.set()

    monkeypatch.setattr(drain_module, "stop_serving", stop)
    registry = StuckRegistry()
    drain = Drain(registry, drain_s=0.05)  # type: ignore[arg-type]
    drain.begin()
    assert drain.active and registry.draining
    async with asyncio.timeout(5):
        await stopped.wait()
    assert stops == ["stop"]
    assert "drain time over with 1 calls in progress" in caplog.text


async def test_a_second_sigterm_stops_at_once(monkeypatch):
    stops: list[str] = []
    monkeypatch.setattr(drain_module, "stop_serving", lambda: stops.append("stop"))
    drain = Drain(StuckRegistry(), drain_s=60)  # type: ignore[arg-type]
    drain.begin()
    assert stops == []  # draining: waiting for the call
    drain.begin()
    assert stops == ["stop"]
    drain._task.cancel()  # type: ignore[union-attr]
    await asyncio.gather(drain._task, return_exceptions=True)  # type: ignore[arg-type]


RACE = """
import asyncio, os, signal
from aiohttp.web_runner import GracefulExit
from voicebot.drain import stop_serving
async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_serving)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.Event().wait()
loop = asyncio.new_event_loop()
task = loop.create_task(main())
try:
    loop.run_until_complete(task)
except GracefulExit:
    print("stopping")
task.cancel()
try:
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    print("shutdown ran to its end")
except GracefulExit:
    print("shutdown cut short")
"""


def test_two_signals_in_one_turn_of_the_loop_stop_it_once():
    """Both signals reach the handler in place before the first ran: the second must not
    raise again into the shutdown (it cut short the handover and the store's close)."""
    out = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.split() == ["stopping", "shutdown", "ran", "to", "its", "end"], out.stdout + out.stderr
    assert "already stopping" in out.stderr
