"""Drain's own decisions, on a registry whose call never ends (the real worker's
drain, with calls and a load balancer's view of /healthz, is in test_cluster.py)."""

from __future__ import annotations

import asyncio

from voicebot import drain as drain_module
from voicebot.drain import Drain


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
