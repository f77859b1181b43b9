"""The SQLite backend of `voicebot.storage.sql`: one aiosqlite connection per
store, to the file the call store, the staff desk and the reports share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from voicebot.storage.migrations import migrate_sqlite
from voicebot.storage.sql import Params, Row

BUSY_TIMEOUT_MS = 5000  # several connections write to one file: wait for the other, never fail


class SqliteSql:
    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock | None) -> None:
        self._db = db
        self._lock = lock  # None: a transaction's view, which already holds it

    async def run(self, sql: str, params: Params = ()) -> tuple[list[Row], int]:
        with _closed_is_unavailable():
            if self._lock is None:
                return await self._statement(sql, params)
            async with self._lock:
                try:
                    result = await self._statement(sql, params)
                    await self._db.commit()
                except BaseException:
                    await self._db.rollback()
                    raise
                return result

    async def _statement(self, sql: str, params: Params) -> tuple[list[Row], int]:
        cursor = await self._db.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        found = [dict(zip(names, r, strict=True)) for r in await cursor.fetchall()] if names else []
        return found, cursor.rowcount

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteSql]:
        if self._lock is None:
            raise RuntimeError("transactions do not nest")
        async with self._lock:  # other statements on this connection wait, not join in
            with _closed_is_unavailable():
                try:
                    await self._db.execute("BEGIN")
                    yield SqliteSql(self._db, None)
                    await self._db.commit()
                except BaseException:
                    await self._db.rollback()
                    raise

    async def scrub(self) -> None:
        await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy left in the WAL

    async def close(self) -> None:
        await self._db.close()


@contextlib.contextmanager
def _closed_is_unavailable() -> Iterator[None]:
    """aiosqlite reports a closed connection (the database went away under a
    write) as a ValueError, which callers take for bad data: it is an outage."""
    try:
        yield
    except ValueError as exc:
        if str(exc) != "no active connection":
            raise
        raise sqlite3.OperationalError("the database connection is closed") from exc


async def connect_sqlite(path: str, *pragmas: str) -> SqliteSql:
    """Connect (creating the directory), apply `pragmas`, bring the schema up to date."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _create_owner_only(path)
    db = await aiosqlite.connect(path)
    try:
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA secure_delete=ON")  # erased or re-encrypted data is overwritten
        for pragma in pragmas:
            await db.execute(f"PRAGMA {pragma}")
        await migrate_sqlite(db)
    except BaseException:
        await db.close()  # its thread would keep the process alive
        raise
    return SqliteSql(db, asyncio.Lock())


def _create_owner_only(path: str) -> None:
    """A new database file is owner-only (SQLite gives its -wal/-shm the same mode).
    Never open and close an existing one here: closing any descriptor of a file
    drops every POSIX lock this process holds on it, i.e. the other connections'."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
