"""Callers who opted out of the automated assistant, by pseudonym only (never the number)."""

from __future__ import annotations

import time
from pathlib import Path

from voicebot.storage.staff import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS caller_opt_outs (
    caller TEXT PRIMARY KEY,  -- the caller's pseudonym
    since REAL NOT NULL,
    call_id TEXT NOT NULL DEFAULT ''  -- the call in which they opted out ('' = by an admin)
);
"""


class OptOutStore(Database):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    async def all(self) -> set[str]:
        return {row["caller"] for row in await self.rows("SELECT caller FROM caller_opt_outs")}

    async def add(self, caller: str, call_id: str = "") -> bool:
        return await self.write("INSERT OR IGNORE INTO caller_opt_outs (caller, since, call_id) "
                                "VALUES (?, ?, ?)", (caller, time.time(), call_id)) > 0

    async def remove(self, caller: str) -> bool:
        removed = await self.write("DELETE FROM caller_opt_outs WHERE caller = ?", (caller,)) > 0
        await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy left in the WAL
        return removed

    async def has(self, caller: str) -> bool:
        return bool(await self.rows("SELECT 1 FROM caller_opt_outs WHERE caller = ?", (caller,)))
