"""A CallStore in memory, for tests of the layers above storage.

    FakeCallStore()                        # answers at once
    FakeCallStore(delay_s=2.0)             # every write takes 2 s (a slow database)
    FakeCallStore(fail=OSError("down"))    # every write raises (a database that is gone)
    store.hold()  ...  store.release()     # writes wait until released

`writes` lists (op, call_id) for every write that completed, in order; `started`
counts the writes begun. Records are kept as `SqliteCallStore` keeps them:
scalar fields on the record, events as {"at": ..., **item} in arrival order,
an event repeated at the same instant stored once.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import fields
from typing import Any

from voicebot.storage.base import EVENT_LISTS, CallRecord, utterance_json
from voicebot.types import Utterance

_SCALARS = {f.name for f in fields(CallRecord)} - set(EVENT_LISTS.values())


class FakeCallStore:
    def __init__(self, *, delay_s: float = 0.0, fail: BaseException | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.records: dict[str, CallRecord] = {}
        self.meta: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []
        self.started = 0
        self.opened = False
        self._open_gate = asyncio.Event()
        self._open_gate.set()

    def hold(self) -> None:
        self._open_gate.clear()

    def release(self) -> None:
        self._open_gate.set()

    async def open(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    # --- writes ------------------------------------------------------------------------
    async def create(self, record: CallRecord) -> None:
        await self._begin()
        if record.call_id in self.records:
            raise ValueError(f"call {record.call_id} exists")
        self.records[record.call_id] = copy.deepcopy(record)
        self.writes.append(("create", record.call_id))

    async def update(self, call_id: str, **values: Any) -> None:
        unknown = set(values) - _SCALARS
        if unknown:
            raise ValueError(f"not call fields: {sorted(unknown)}")
        await self._begin()
        record = self.records.get(call_id)
        if record is not None:
            for key, value in values.items():
                setattr(record, key, value)
        self.writes.append(("update", call_id))

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        await self._event(call_id, at, "utterance", utterance_json(utterance))

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        await self._event(call_id, at, "prompt", dict(prompt))

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        await self._event(call_id, at, "transcript", dict(item))

    async def _event(self, call_id: str, at: float, kind: str, item: dict[str, Any]) -> None:
        await self._begin()
        record = self.records.get(call_id)
        if record is not None:
            events = getattr(record, EVENT_LISTS[kind])
            if not any(e["at"] == at for e in events):
                events.append({"at": at, **item})
        self.writes.append((kind, call_id))

    async def _begin(self) -> None:
        self.started += 1
        await self._open_gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail

    # --- reads and erasure -------------------------------------------------------------
    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        found = self.records.get(call_or_gateway_id) or next(
            (r for r in self.records.values() if r.gateway_call_id == call_or_gateway_id), None)
        return copy.deepcopy(found)

    async def erase_caller(self, caller: str) -> list[str]:
        return self._erase([cid for cid, r in self.records.items() if r.caller == caller])

    async def erase_started_before(self, cutoff: float) -> list[str]:
        return self._erase([cid for cid, r in self.records.items() if r.started_at < cutoff])

    def _erase(self, call_ids: list[str]) -> list[str]:
        for call_id in call_ids:
            del self.records[call_id]
        return call_ids

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        found = [r for r in self.records.values() if r.caller == caller]
        return [copy.deepcopy(r) for r in sorted(found, key=lambda r: r.started_at)]

    async def claim_meta(self, name: str, value: str) -> str:
        return self.meta.setdefault(name, value)
