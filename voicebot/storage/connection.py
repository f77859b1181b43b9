"""Opening the SQLite file the call store and the staff desk share."""

from __future__ import annotations

import os
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 5000  # two connections write to one file: wait for the other, never fail


async def connect(path: str, schema: str, *pragmas: str) -> aiosqlite.Connection:
    """Connect (creating the directory), apply `pragmas` and the idempotent `schema`."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # owner-only from the start (SQLite gives its -wal/-shm files the same mode)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = await aiosqlite.connect(path)
    await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await db.execute("PRAGMA secure_delete=ON")  # erased or re-encrypted data is overwritten
    for pragma in pragmas:
        await db.execute(f"PRAGMA {pragma}")
    await db.executescript(schema)
    await db.commit()
    return db
