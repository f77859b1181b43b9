"""The one SQL interface every store writes through, whichever database is behind it.

Statements are written once, in the SQL both backends accept: `?` placeholders,
`INSERT ... ON CONFLICT DO NOTHING`, `RETURNING` for a new row's id, and the
column `"user"` always quoted. The SQLite backend runs them as they are
(`voicebot.storage.connection`), the PostgreSQL backend numbers the
placeholders (`voicebot.storage.postgres`). The tables themselves are made by
the versioned migrations (`voicebot.storage.migrations`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Params = tuple[Any, ...] | list[Any]
Row = dict[str, Any]


class Sql(Protocol):
    dialect: str  # "sqlite" | "postgresql"

    async def run(self, sql: str, params: Params = ()) -> tuple[list[Row], int]:
        """One statement, committed (unless inside `transaction`): its rows, if it
        returns any, and the number of rows it changed."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Sql]:
        """Statements on the yielded Sql commit together, or not at all."""
        ...

    async def scrub(self) -> None:
        """After personal data was deleted or rewritten: leave no copy of it in a
        log the database keeps beside its tables (SQLite's write-ahead log)."""
        ...

    async def close(self) -> None: ...


async def rows(sql: Sql, statement: str, params: Params = ()) -> list[Row]:
    return (await sql.run(statement, params))[0]


async def changed(sql: Sql, statement: str, params: Params = ()) -> int:
    return (await sql.run(statement, params))[1]


async def returned(sql: Sql, statement: str, params: Params = ()) -> Any:
    """The first column of the first row (`INSERT ... RETURNING id`), or None."""
    found = (await sql.run(statement, params))[0]
    return next(iter(found[0].values())) if found else None
