"""Draining a worker before it stops (`VOICEBOT_DRAIN_S`).

On SIGTERM a worker that may drain keeps serving the calls it has and its
health check, but takes no new bot conversation: `/healthz` answers 503
`{"status": "draining"}` so the load balancer sends new calls elsewhere, and a
call that reaches it anyway hears the disclosure and goes straight to a person
(like any call while the server shuts down). Once its last call has ended, or
`drain_s` has passed, it shuts down as on any SIGTERM (what is still running is
handed to a person). A second SIGTERM skips the wait. Once the shutdown has
begun (`stop_serving`), further SIGTERMs and SIGINTs are only logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import weakref

from aiohttp.web_runner import GracefulExit

from voicebot.call.registry import CallRegistry

log = logging.getLogger(__name__)


class Drain:
    def __init__(self, registry: CallRegistry, drain_s: float) -> None:
        self.registry = registry
        self.drain_s = drain_s
        self.since: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def install(self) -> None:
        """SIGTERM starts the drain (the main thread's loop only; elsewhere aiohttp's own stop)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.begin)
        except (ValueError, RuntimeError, NotImplementedError):
            log.debug("no draining on SIGTERM: the event loop is not in the main thread")

    def begin(self) -> None:
        if self.active:
            log.info("second SIGTERM: stopping now")
            stop_serving()
            return
        self.since = time.monotonic()
        self.registry.draining = True
        log.info("draining: %d calls in progress; no new calls (up to %.0f s)",
                 len(self.registry.sessions), self.drain_s)
        self._task = asyncio.create_task(self._finish(), name="drain")

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(self._calls_ended(), self.drain_s)
            log.info("drained: every call has ended")
        except TimeoutError:
            log.warning("drain time over with %d calls in progress", len(self.registry.sessions))
        stop_serving()

    async def _calls_ended(self) -> None:
        while self.registry.sessions:
            await self.registry.changed()


def stop_serving() -> None:
    """Leave the server's run loop as aiohttp's own SIGTERM handler does, once. A
    SIGTERM or SIGINT after this is only logged: raising again would cut short the
    handover of the calls and the closing of the store, whose threads would then
    keep the process alive with nothing serving (SIGKILL still stops it at once).
    Two signals read in one turn of the loop both reach the handler set before the
    first ran, so the loop itself remembers that it is stopping."""
    loop = asyncio.get_running_loop()
    if loop in _STOPPING:
        _already_stopping()
        return
    _STOPPING.add(loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread's loop
            loop.add_signal_handler(sig, _already_stopping)

    def stop() -> None:
        raise GracefulExit()
    loop.call_soon(stop)


_STOPPING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _already_stopping() -> None:
    log.warning("already stopping: handing the calls over and closing the store first")
