"""Opening the SQLite file the call store and the staff desk share."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 5000  # two connections write to one file: wait for the other, never fail


async def connect(path: str, schema: str, *pragmas: str) -> aiosqlite.Connection:
    """Connect (creating the directory), apply `pragmas` and the idempotent `schema`."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _create_owner_only(path)
    db = await aiosqlite.connect(path)
    await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await db.execute("PRAGMA secure_delete=ON")  # erased or re-encrypted data is overwritten
    for pragma in pragmas:
        await db.execute(f"PRAGMA {pragma}")
    await db.executescript(schema)
    await db.commit()
    return db


def _create_owner_only(path: str) -> None:
    """A new database file is owner-only (SQLite gives its -wal/-shm the same mode).
    Never open and close an existing one here: closing any descriptor of a file
    drops every POSIX lock this process holds on it, i.e. the other connections'."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
