"""Opening the SQLite file the call store and the staff desk share."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 5000  # two connections write to one file: wait for the other, never fail


async def connect(path: str, schema: str, *pragmas: str) -> aiosqlite.Connection:
    """Connect (creating the directory), apply `pragmas` and the idempotent `schema`."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path)
    await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await db.execute("PRAGMA secure_delete=ON")  # erased or re-encrypted data is overwritten
    for pragma in pragmas:
        await db.execute(f"PRAGMA {pragma}")
    await db.executescript(schema)
    await db.commit()
    return db
