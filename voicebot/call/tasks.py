"""Every task one call starts, owned in one place and awaited when the call ends.

Like `asyncio.TaskGroup`, but a call's tasks are started from synchronous
callbacks (a DTMF digit, a mark echo) before and after `run()` enters, and a
call ends by cancelling some (timers, playout) while letting others finish
(a recognition still under way, a lookup): so the group is explicit about
both. A task that fails is logged; the session turns its failures into a
handoff itself, so nothing here ends the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class CallTasks:
    def __init__(self, label: str) -> None:
        self._label = label
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T] | None:
        """Start `coro` as one of the call's tasks; None once the call is over
        (a late DTMF digit or mark from the gateway starts nothing)."""
        if self._closed:
            coro.close()
            log.debug("%s is over: %s not started", self._label, name)
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def running(self) -> set[asyncio.Task[Any]]:
        return set(self._tasks)

    async def settle(self, timeout: float) -> None:
        """Let the running tasks finish for up to `timeout` seconds (new ones included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (running := self.running) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(running, timeout=left)

    async def close(self) -> None:
        """Cancel whatever still runs and await every task; none may start after."""
        self._closed = True
        while running := self.running:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, ConnectionError):  # the line closed under it: the caller hung up
            log.info("%s: task %s ended with the connection (%s)", self._label, task.get_name(),
                     type(exc).__name__)
        elif exc is not None:
            # the type only: an exception's text may carry what the caller said
            log.error("%s: task %s failed: %s", self._label, task.get_name(), type(exc).__name__)
