"""SQLite call store (the embedded default), via aiosqlite's worker thread."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiosqlite

from voicebot.storage.base import EVENT_LISTS, CallRecord, utterance_json
from voicebot.storage.connection import connect
from voicebot.types import Utterance

Row = dict[str, Any]
_SCALARS = [f.name for f in fields(CallRecord) if f.name not in EVENT_LISTS.values()]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS calls (
    {", ".join(n + (" TEXT PRIMARY KEY" if n == "call_id" else "") for n in _SCALARS)}
);
CREATE INDEX IF NOT EXISTS calls_gateway_id ON calls (gateway_call_id);
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS call_events (
    call_id TEXT NOT NULL REFERENCES calls (call_id),
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events (call_id, seq);
"""


class SqliteCallStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await connect(self.path, _SCHEMA, "journal_mode=WAL", "synchronous=NORMAL")
        await _ensure_columns(self._db)
        await _ensure_events_once(self._db)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("call store is not open")
        return self._db

    async def create(self, record: CallRecord) -> None:
        values = [getattr(record, n) for n in _SCALARS]
        marks = ", ".join("?" for _ in _SCALARS)
        await self.db.execute(f"INSERT INTO calls ({', '.join(_SCALARS)}) VALUES ({marks})", values)
        await self.db.commit()

    async def update(self, call_id: str, **values: Any) -> None:
        unknown = set(values) - set(_SCALARS)
        if unknown:
            raise ValueError(f"not call fields: {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in values)
        await self.db.execute(
            f"UPDATE calls SET {assignments} WHERE call_id = ?", [*values.values(), call_id]
        )
        await self.db.commit()

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        await self._add_event(call_id, at, "utterance", utterance_json(utterance))

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        await self._add_event(call_id, at, "prompt", prompt)

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        await self._add_event(call_id, at, "transcript", item)

    async def _add_event(self, call_id: str, at: float, kind: str, payload: dict[str, Any]) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO call_events (call_id, at, kind, payload) VALUES (?, ?, ?, ?)",
            (call_id, at, kind, json.dumps(payload, ensure_ascii=False)),
        )
        await self.db.commit()

    async def erase_caller(self, caller: str) -> list[str]:
        """Delete every call from `caller` and all that was recorded in it, at once."""
        return await self._erase("caller = ?", caller)

    async def erase_started_before(self, cutoff: float) -> list[str]:
        """Retention: delete the calls that started before `cutoff` (epoch seconds)."""
        return await self._erase("started_at < ?", cutoff)

    async def _erase(self, where: str, value: Any) -> list[str]:
        cursor = await self.db.execute(f"SELECT call_id FROM calls WHERE {where}", (value,))
        ids = [row[0] for row in await cursor.fetchall()]
        if ids:
            marks = ", ".join("?" * len(ids))
            await self.db.execute(f"DELETE FROM call_events WHERE call_id IN ({marks})", ids)
            await self.db.execute(f"DELETE FROM calls WHERE call_id IN ({marks})", ids)
            await self.db.commit()
            await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy left in the WAL
        return ids

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        cursor = await self.db.execute(
            "SELECT call_id FROM calls WHERE caller = ? ORDER BY started_at", (caller,))
        ids = [row[0] for row in await cursor.fetchall()]
        return [r for r in [await self.get(i) for i in ids] if r is not None]

    async def claim_meta(self, name: str, value: str) -> str:
        await self.db.execute("INSERT OR IGNORE INTO store_meta (name, value) VALUES (?, ?)",
                              (name, value))
        await self.db.commit()
        cursor = await self.db.execute("SELECT value FROM store_meta WHERE name = ?", (name,))
        row = await cursor.fetchone()
        return str(row[0]) if row else value

    async def rewrite(self, row: Callable[[Row], Row], item: Callable[[str, Row], Row],
                      meta: Callable[[str], str]) -> int:
        """Key rotation: every call row, event and meta value through the given
        functions, in one transaction (all under the new key, or none). Calls rewritten."""
        db = self.db
        cursor = await db.execute(f"SELECT {', '.join(_SCALARS)} FROM calls")
        rows = [dict(zip(_SCALARS, r, strict=True)) for r in await cursor.fetchall()]
        for old in rows:
            new = row(old)
            await db.execute(f"UPDATE calls SET {', '.join(f'{k} = ?' for k in _SCALARS)} "
                             "WHERE call_id = ?", [*(new[k] for k in _SCALARS), old["call_id"]])
        cursor = await db.execute("SELECT seq, kind, payload FROM call_events")
        for seq, kind, payload in await cursor.fetchall():
            new_payload = json.dumps(item(kind, json.loads(payload)), ensure_ascii=False)
            await db.execute("UPDATE call_events SET payload = ? WHERE seq = ?", (new_payload, seq))
        cursor = await db.execute("SELECT name, value FROM store_meta")
        for name, value in await cursor.fetchall():
            await db.execute("UPDATE store_meta SET value = ? WHERE name = ?", (meta(value), name))
        await db.commit()
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no old page left in the WAL
        return len(rows)

    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        """The call with this id; only if none has it, the first call the gateway
        knew by it (ids are refused once used, so there is at most one)."""
        cursor = await self.db.execute(
            f"SELECT {', '.join(_SCALARS)} FROM calls WHERE call_id = ? OR gateway_call_id = ? "
            "ORDER BY call_id = ? DESC, started_at ASC LIMIT 1",
            (call_or_gateway_id, call_or_gateway_id, call_or_gateway_id),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        record = CallRecord(**dict(zip(_SCALARS, row, strict=True)))
        cursor = await self.db.execute(
            "SELECT at, kind, payload FROM call_events WHERE call_id = ? ORDER BY seq",
            (record.call_id,),
        )
        for at, kind, payload in await cursor.fetchall():
            item = {"at": at, **json.loads(payload)}
            getattr(record, EVENT_LISTS.get(kind, "prompts")).append(item)
        return record


async def _ensure_columns(db: aiosqlite.Connection) -> None:
    """Columns added since a database was made (`caller_sealed`)."""
    cursor = await db.execute("PRAGMA table_info(calls)")
    have = {row[1] for row in await cursor.fetchall()}
    for name in _SCALARS:
        if name not in have:
            await db.execute(f"ALTER TABLE calls ADD COLUMN {name} DEFAULT ''")
    await db.commit()


async def _ensure_events_once(db: aiosqlite.Connection) -> None:
    """One event of a kind per call and instant, so a write repeated by the journal
    (a replay cut short by a crash, a write that timed out but landed late) is
    stored once. Databases from before this index are de-duplicated first, once."""
    cursor = await db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                              (_EVENTS_ONCE,))
    if await cursor.fetchone() is not None:
        return
    await db.execute("DELETE FROM call_events WHERE seq NOT IN "
                     "(SELECT MIN(seq) FROM call_events GROUP BY call_id, kind, at)")
    await db.execute(f"CREATE UNIQUE INDEX {_EVENTS_ONCE} ON call_events (call_id, kind, at)")
    await db.commit()


_EVENTS_ONCE = "call_events_once"
