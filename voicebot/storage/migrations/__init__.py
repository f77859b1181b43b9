"""Versioned schema migrations, one numbered SQL file per step and backend.

`sqlite/NNNN_name.sql` and `postgresql/NNNN_name.sql` make the same tables;
`schema_version` records which steps a database has had. Each step runs in
its own transaction, under a lock, so workers starting together apply it
once: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's transaction-scoped advisory
lock. A SQLite file from before versioning (tables but no `schema_version`)
is adopted: the columns and the unique event index it lacks are added (its
repeated events removed first), then it counts as version 1 and is upgraded.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

HERE = Path(__file__).parent
PG_LOCK = 0x766F6963  # advisory lock key: migrations of one PostgreSQL database, one at a time
_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version "
                  "(version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)")
_ADD_COLUMN = re.compile(r"^\s*ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE | re.MULTILINE)
CALL_COLUMNS = ("call_id", "gateway", "gateway_call_id", "stream_id", "caller", "language",
                "started_at", "ended_at", "disclosure_text", "disclosure_started_at",
                "disclosure_played_at", "disclosure_confirmed_by", "outcome", "handoff_reason",
                "handoff_target", "summary", "caller_sealed")


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    sql: str


def steps(dialect: str) -> list[Step]:
    """The migrations of a backend, in order (`0001_base.sql` is version 1)."""
    found = []
    for path in sorted((HERE / dialect).glob("[0-9][0-9][0-9][0-9]_*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Step(int(number), name, path.read_text(encoding="utf-8")))
    return found


def latest() -> int:
    return steps("sqlite")[-1].version


# --- SQLite -----------------------------------------------------------------------
async def migrate_sqlite(db: aiosqlite.Connection) -> int:
    """Bring the file up to the latest version; returns the version it was at."""
    await db.execute(_VERSION_TABLE.format(real="REAL"))
    await db.commit()
    was = await _sqlite_version(db)
    for step in steps("sqlite"):
        if step.version <= was:
            continue
        await db.execute("BEGIN IMMEDIATE")  # one writer: another process waits here
        try:
            if await _sqlite_version(db) < step.version:  # unless it applied it meanwhile
                if step.version == 1:
                    await _adopt_unversioned(db)
                for statement in sql_statements(step.sql):
                    if not await _column_exists(db, statement):
                        await db.execute(statement)
                await db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                 (step.version, time.time()))
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
    return was


async def _column_exists(db: aiosqlite.Connection, statement: str) -> bool:
    """Whether `statement` adds a column the table has already: SQLite has no
    ADD COLUMN IF NOT EXISTS, and an adopted file may have it from before versions."""
    match = _ADD_COLUMN.search(statement)
    if match is None:
        return False
    cursor = await db.execute(f"PRAGMA table_info({match[1]})")
    return match[2] in {row[1] for row in await cursor.fetchall()}


async def _sqlite_version(db: aiosqlite.Connection) -> int:
    cursor = await db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _adopt_unversioned(db: aiosqlite.Connection) -> None:
    """A file made before versioning: what it may lack, before version 1 is applied."""
    cursor = await db.execute("PRAGMA table_info(calls)")
    have = {row[1] for row in await cursor.fetchall()}
    if have:
        for name in CALL_COLUMNS:
            if name not in have:  # e.g. `caller_sealed`
                await db.execute(f"ALTER TABLE calls ADD COLUMN {name} DEFAULT ''")
    cursor = await db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                              "AND name = 'call_events'")
    if await cursor.fetchone() is not None:
        # repeats of one event (call, kind, instant) from before the unique index: keep the first
        await db.execute("DELETE FROM call_events WHERE seq NOT IN "
                         "(SELECT MIN(seq) FROM call_events GROUP BY call_id, kind, at)")


def sql_statements(script: str) -> list[str]:
    """A script as single statements (a trigger's BEGIN ... END is one)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    return out


# --- PostgreSQL -------------------------------------------------------------------
async def migrate_postgres(conn: Any) -> int:
    """The same for an asyncpg connection; returns the version the database was at."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_LOCK)
        await conn.execute(_VERSION_TABLE.format(real="double precision"))
        was = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        for step in steps("postgresql"):
            if step.version > was:
                await conn.execute(step.sql)
                await conn.execute("INSERT INTO schema_version (version, applied_at) "
                                   "VALUES ($1, $2)", step.version, time.time())
    return was
