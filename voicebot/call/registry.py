"""The live calls of this process and the shared services once they are ready.

Never refuses a call: beyond `max_calls`, or while the server is draining
for shutdown, a new call hears the disclosure and goes straight to a human.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from voicebot.call.media import MediaChannel
from voicebot.call.session import CallServices, CallSession
from voicebot.events import CallStarted, CallTagged
from voicebot.metrics import Metrics
from voicebot.storage.base import CallRecord
from voicebot.types import HandoffReason

log = logging.getLogger(__name__)


def segment_labels(params: dict[str, str]) -> dict[str, str]:
    """Gateway parameters named `segment_<key>` are labels: `segment_plan=gold` → plan=gold."""
    return {k.removeprefix("segment_"): v for k, v in params.items() if k.startswith("segment_")}


class PerCall(Protocol):
    """The services one call runs with (its A/B variants' settings, an observed store)."""

    def services_for(self, call_id: str, services: CallServices) -> CallServices: ...
    def prompt_texts(self) -> list[str]: ...


class CallRegistry:
    def __init__(self, max_calls: int = 64, metrics: Metrics | None = None) -> None:
        self.services: CallServices | None = None  # None until engine + prompts are ready
        self.sessions: dict[str, CallSession] = {}
        self._ended_waiters: list[asyncio.Future[None]] = []
        self.max_calls = max_calls
        self.metrics = metrics or Metrics()
        self.draining = False
        self.opted_out: Callable[[str], bool] = lambda caller: False  # by number
        self._tasks: set[asyncio.Task[None]] = set()
        self._overflow: set[str] = set()  # calls over capacity: not counted against max_calls
        self.per_call: PerCall | None = None
        self.metrics.track_active(lambda: len(self.sessions))

    @property
    def ready(self) -> bool:
        return self.services is not None

    def has_call(self, call_or_gateway_id: str) -> bool:
        """A live call has this id as its own or as its gateway's."""
        return call_or_gateway_id in self.sessions or any(
            s.recorder.record.gateway_call_id == call_or_gateway_id
            for s in self.sessions.values())

    def new_session(self, record: CallRecord, channel: MediaChannel) -> CallSession:
        if self.services is None:
            raise RuntimeError("services are not ready")
        if not record.call_id:
            record.call_id = uuid.uuid4().hex
        if record.call_id in self.sessions:
            raise KeyError(record.call_id)
        if record.language not in self.services.languages:  # asked for none, or one we lack
            record.language = self.services.settings.language
        reason = self._admission()
        if reason is None and self.opted_out(record.caller):
            reason = HandoffReason.OPTED_OUT
        services = self.services
        if self.per_call is not None:
            services = self.per_call.services_for(record.call_id, services)
        session = CallSession(record, channel, services, hand_over=reason)
        self.sessions[record.call_id] = session
        if reason is not None:
            self._overflow.add(record.call_id)
        self.metrics.calls.labels(record.gateway, record.language).inc()
        self.services.events.publish(CallStarted(record.call_id, record.gateway, record.language,
                                                 channel.line_rate))
        return session

    def label(self, call_id: str, labels: dict[str, str]) -> None:
        """Caller-group labels from the gateway, for the reports' fairness splits."""
        assert self.services is not None
        for key, value in labels.items():
            self.services.events.publish(CallTagged(call_id, key, value))

    def _admission(self) -> HandoffReason | None:
        if self.draining:
            return HandoffReason.SHUTDOWN
        if len(self.sessions) - len(self._overflow) >= self.max_calls:
            self.metrics.over_capacity.inc()
            log.warning("over capacity (%d calls): sending a new call to a human", self.max_calls)
            return HandoffReason.OVER_CAPACITY
        return None

    async def run(self, session: CallSession) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await session.run()
        finally:
            call_id = session.recorder.call_id
            self.sessions.pop(call_id, None)
            self._overflow.discard(call_id)
            waiters, self._ended_waiters = self._ended_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            record = session.recorder.record
            if record.outcome == "handoff":
                self.metrics.handoffs.labels(record.handoff_reason).inc()

    async def changed(self) -> None:
        """Returns once some call has ended after this was called."""
        waiter = asyncio.get_running_loop().create_future()
        self._ended_waiters.append(waiter)
        await waiter

    async def drain(self, grace_s: float) -> None:
        """Shutdown: no new bot conversations; every call in progress is handed to a
        human (a handoff already under way finishes with its own reason). Waits at
        most `grace_s`, then hangs up whatever is left."""
        self.draining = True
        for session in list(self.sessions.values()):
            session.hand_over(HandoffReason.SHUTDOWN)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            if pending:
                log.warning("%d calls still running after %.0f s of shutdown grace",
                            len(pending), grace_s)
        await self.hang_up_all()

    async def hang_up_all(self) -> None:
        for session in list(self.sessions.values()):
            session.on_hangup()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
