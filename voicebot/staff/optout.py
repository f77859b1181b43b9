"""Opting out of the automated assistant, remembered per pseudonymised caller.

A request for a person that refuses the machine ("I don't want to talk to a
robot", see `voicebot.privacy.optout`) is handed over at once as usual, and so
is a press of `VOICEBOT_OPT_OUT_KEY` (named in the disclosure); either is
also remembered: the caller's next call hears the disclosure and goes straight
to a person (`opted_out`). Admins can see, add and withdraw an opt-out on the
caller's request; each is audited (without the number) and counted in
`voicebot_opt_outs_total{event}`. The set is held in memory, so admission of a
call never waits on the database; it is loaded at start and again every
`REFRESH_S` (changes made from the shell or by another server reach it then).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from voicebot.events import CallEvent, HandoffDecided
from voicebot.metrics import Metrics
from voicebot.privacy.crypto import Privacy
from voicebot.privacy.optout import says_opt_out
from voicebot.storage.optout import OptOutStore
from voicebot.storage.staff import StaffStore
from voicebot.types import HandoffReason, Source

log = logging.getLogger(__name__)
REFRESH_S = 60.0


class OptOuts:
    def __init__(self, store: OptOutStore, privacy: Privacy, staff: StaffStore,
                 metrics: Metrics) -> None:
        self.store = store
        self.privacy = privacy
        self.staff = staff
        self.counted = Counter("voicebot_opt_outs", "Opt-outs from the automated assistant",
                               ["event"], registry=metrics.registry)  # recorded|withdrawn
        self._callers: set[str] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._refresh: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.store.open()
        self._callers = await self.store.all()
        self._refresh = asyncio.create_task(self._keep_fresh(), name="opt-out-refresh")

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.store.close()

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                self._callers = await self.store.all()
            except Exception:  # keep the last set; try again next time
                log.exception("reloading opt-outs failed")

    async def stored(self, number: str) -> bool:
        """What the database says now (the admin API and exports)."""
        return await self.store.has(self.privacy.pseudonym(number))

    def opted_out(self, number: str) -> bool:
        """At call admission: synchronous, from memory."""
        return bool(number) and self.privacy.pseudonym(number) in self._callers

    def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, HandoffDecided) and event.caller and _is_opt_out(event):
            task = asyncio.create_task(self._record(event.caller, event.call_id), name="opt-out")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _record(self, number: str, call_id: str) -> None:
        try:
            await self.set(number, True, "system", "system", call_id)
        except Exception:  # the caller is with a person already; only the memory is lost
            log.exception("call %s: storing an opt-out failed", call_id)

    async def set(self, number: str, opted_out: bool, user: str, role: str,
                  call_id: str = "") -> bool:
        """Add or withdraw; True if that changed anything (then audited and counted)."""
        caller = self.privacy.pseudonym(number)
        if opted_out:
            self._callers.add(caller)
            changed = await self.store.add(caller, call_id)
        else:
            self._callers.discard(caller)
            changed = await self.store.remove(caller)
        if changed:
            event = "recorded" if opted_out else "withdrawn"
            self.counted.labels(event).inc()
            await self.staff.audit(user, role, f"opt_out_{event}", call_id)
        return changed

    async def forget(self, number: str) -> None:
        """Part of erasing a caller: no trace, not even the opt-out (their erasure's
        audit entry covers it)."""
        caller = self.privacy.pseudonym(number)
        self._callers.discard(caller)
        await self.store.remove(caller)


def _is_opt_out(e: HandoffDecided) -> bool:
    """The opt-out key (`opted_out`), or a request for a person refusing the machine."""
    if e.reason == HandoffReason.OPTED_OUT:
        return True
    last = e.transcript[-1] if e.transcript else None
    return (e.reason == HandoffReason.CALLER_REQUEST and last is not None
            and last.source is Source.SPEECH and says_opt_out(last.text, e.language))
