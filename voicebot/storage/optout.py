"""Callers who opted out of the automated assistant, by pseudonym only (never the number)."""

from __future__ import annotations

import time

from voicebot.storage.staff import Database


class OptOutStore(Database):
    async def all(self) -> set[str]:
        return {row["caller"] for row in await self.rows("SELECT caller FROM caller_opt_outs")}

    async def add(self, caller: str, call_id: str = "") -> bool:
        return await self.write("INSERT INTO caller_opt_outs (caller, since, call_id) "
                                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                (caller, time.time(), call_id)) > 0

    async def remove(self, caller: str) -> bool:
        removed = await self.write("DELETE FROM caller_opt_outs WHERE caller = ?", (caller,)) > 0
        await self.sql.scrub()
        return removed

    async def has(self, caller: str) -> bool:
        return bool(await self.rows("SELECT 1 FROM caller_opt_outs WHERE caller = ?", (caller,)))
