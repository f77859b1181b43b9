"""The PostgreSQL backend of `voicebot.storage.sql`, on an asyncpg pool.

Statements arrive in the shared dialect; only the placeholders change (`?` →
`$1`, `$2`, ...). Every statement has `timeout_s` (asyncpg's command timeout),
so a server that stops answering is an error the journal can act on, not a hang.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from voicebot.storage.migrations import migrate_postgres
from voicebot.storage.sql import Params, Row

POOL_SIZE = 4  # connections per store (5 stores) and worker; a statement waits for a free one
_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?")
_RETURNS_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES)\b|\bRETURNING\b", re.IGNORECASE)

# what a backend raises for bad data rather than for being unreachable (not journalled)
DATA_ERRORS: tuple[type[BaseException], ...] = (asyncpg.IntegrityConstraintViolationError,)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as `$1`, `$2`, ... (never inside a quoted literal)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"
    return _LITERAL_OR_MARK.sub(number, sql)


class PostgresSql:
    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool | None, conn: Any = None) -> None:
        self._pool = pool
        self._conn = conn  # set: a transaction's view, on its one connection

    async def run(self, sql: str, params: Params = ()) -> tuple[list[Row], int]:
        if self._conn is not None:
            return await _statement(self._conn, sql, params)
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            return await _statement(conn, sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresSql]:
        if self._pool is None:
            raise RuntimeError("transactions do not nest")
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresSql(None, conn)

    async def scrub(self) -> None:
        """Deleted rows stay in the table's pages until vacuumed; autovacuum does
        that, and the server's own storage is the operator's to protect."""

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await asyncio.wait_for(self._pool.close(), 5.0)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._pool.terminate()  # a server gone away: drop the connections


async def _statement(conn: Any, sql: str, params: Params) -> tuple[list[Row], int]:
    query = numbered(sql)
    if _RETURNS_ROWS.search(sql):
        records = await conn.fetch(query, *params)
        return [dict(r) for r in records], len(records)
    status = await conn.execute(query, *params)  # e.g. "UPDATE 3", "INSERT 0 1"
    tail = status.rsplit(" ", 1)[-1]
    return [], int(tail) if tail.isdigit() else 0


async def connect_postgres(url: str, timeout_s: float = 5.0) -> PostgresSql:
    """A pool to the database at `url`, its schema brought up to date."""
    pool = await asyncpg.create_pool(url, min_size=0, max_size=POOL_SIZE, timeout=timeout_s,
                                     command_timeout=timeout_s)
    try:
        async with pool.acquire() as conn:
            await migrate_postgres(conn)
    except BaseException:
        pool.terminate()
        raise
    return PostgresSql(pool)
