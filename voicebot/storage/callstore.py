"""The call store over SQL: the SQLite file (the embedded default) or a
PostgreSQL server shared by many workers (`voicebot.storage.backends`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from voicebot.storage.backends import open_sql
from voicebot.storage.base import EVENT_LISTS, CallRecord, utterance_json
from voicebot.storage.sql import Sql, rows
from voicebot.types import Utterance

Row = dict[str, Any]
_SCALARS = [f.name for f in fields(CallRecord) if f.name not in EVENT_LISTS.values()]
_COLUMNS = ", ".join(_SCALARS)


class SqlCallStore:
    def __init__(self, db: str | Path, timeout_s: float = 5.0) -> None:
        self.db = str(db)
        self.timeout_s = timeout_s
        self._sql: Sql | None = None

    async def open(self) -> None:
        self._sql = await open_sql(self.db, self.timeout_s, "journal_mode=WAL",
                                   "synchronous=NORMAL")

    async def close(self) -> None:
        if self._sql is not None:
            sql, self._sql = self._sql, None
            await sql.close()

    @property
    def sql(self) -> Sql:
        if self._sql is None:
            raise RuntimeError("call store is not open")
        return self._sql

    async def create(self, record: CallRecord) -> None:
        marks = ", ".join("?" for _ in _SCALARS)
        await self.sql.run(f"INSERT INTO calls ({_COLUMNS}) VALUES ({marks})",
                           [getattr(record, n) for n in _SCALARS])

    async def update(self, call_id: str, **values: Any) -> None:
        unknown = set(values) - set(_SCALARS)
        if unknown:
            raise ValueError(f"not call fields: {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in values)
        await self.sql.run(f"UPDATE calls SET {assignments} WHERE call_id = ?",
                           [*values.values(), call_id])

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        await self._add_event(call_id, at, "utterance", utterance_json(utterance))

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        await self._add_event(call_id, at, "prompt", prompt)

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        await self._add_event(call_id, at, "transcript", item)

    async def _add_event(self, call_id: str, at: float, kind: str, payload: dict[str, Any]) -> None:
        """Once per call, kind and instant: a write the journal repeats is stored once."""
        await self.sql.run(
            "INSERT INTO call_events (call_id, at, kind, payload) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (call_id, float(at), kind, json.dumps(payload, ensure_ascii=False)))

    async def erase_caller(self, caller: str) -> list[str]:
        """Delete every call from `caller` and all that was recorded in it, at once."""
        return await self._erase("caller = ?", caller)

    async def erase_started_before(self, cutoff: float) -> list[str]:
        """Retention: delete the calls that started before `cutoff` (epoch seconds)."""
        return await self._erase("started_at < ?", float(cutoff))

    async def _erase(self, where: str, value: Any) -> list[str]:
        async with self.sql.transaction() as tx:
            ids = [r["call_id"] for r in await rows(tx, f"SELECT call_id FROM calls WHERE {where}",
                                                    (value,))]
            if ids:
                marks = ", ".join("?" * len(ids))
                await tx.run(f"DELETE FROM call_events WHERE call_id IN ({marks})", ids)
                await tx.run(f"DELETE FROM calls WHERE call_id IN ({marks})", ids)
        if ids:
            await self.sql.scrub()
        return ids

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        found = await rows(self.sql, "SELECT call_id FROM calls WHERE caller = ? "
                                     "ORDER BY started_at", (caller,))
        return [r for r in [await self.get(row["call_id"]) for row in found] if r is not None]

    async def claim_meta(self, name: str, value: str) -> str:
        await self.sql.run("INSERT INTO store_meta (name, value) VALUES (?, ?) "
                           "ON CONFLICT DO NOTHING", (name, value))
        found = await rows(self.sql, "SELECT value FROM store_meta WHERE name = ?", (name,))
        return str(found[0]["value"]) if found else value

    async def rewrite(self, row: Callable[[Row], Row], item: Callable[[str, Row], Row],
                      meta: Callable[[str], str]) -> int:
        """Key rotation: every call row, event and meta value through the given
        functions, in one transaction (all under the new key, or none). Calls rewritten."""
        sets = ", ".join(f"{k} = ?" for k in _SCALARS)
        async with self.sql.transaction() as tx:
            calls = await rows(tx, f"SELECT {_COLUMNS} FROM calls")
            for old in calls:
                new = row(old)
                await tx.run(f"UPDATE calls SET {sets} WHERE call_id = ?",
                             [*(new[k] for k in _SCALARS), old["call_id"]])
            for event in await rows(tx, "SELECT seq, kind, payload FROM call_events"):
                payload = item(event["kind"], json.loads(event["payload"]))
                await tx.run("UPDATE call_events SET payload = ? WHERE seq = ?",
                             (json.dumps(payload, ensure_ascii=False), event["seq"]))
            for entry in await rows(tx, "SELECT name, value FROM store_meta"):
                await tx.run("UPDATE store_meta SET value = ? WHERE name = ?",
                             (meta(entry["value"]), entry["name"]))
        await self.sql.scrub()  # no old page left in the WAL
        return len(calls)

    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        """The call with this id; only if none has it, the first call the gateway
        knew by it (ids are refused once used, so there is at most one)."""
        found = await rows(
            self.sql,
            f"SELECT {_COLUMNS} FROM calls WHERE call_id = ? OR gateway_call_id = ? "
            "ORDER BY call_id = ? DESC, started_at ASC LIMIT 1",
            (call_or_gateway_id, call_or_gateway_id, call_or_gateway_id))
        if not found:
            return None
        record = CallRecord(**found[0])
        events = await rows(self.sql, "SELECT at, kind, payload FROM call_events "
                                      "WHERE call_id = ? ORDER BY seq", (record.call_id,))
        for event in events:
            entry = {"at": event["at"], **json.loads(event["payload"])}
            getattr(record, EVENT_LISTS.get(event["kind"], "prompts")).append(entry)
        return record

