"""Which database a setting names, and opening it.

`VOICEBOT_DB` is a SQLite file path (the embedded default) or a PostgreSQL
URL (`postgresql://user:password@host:port/name`), shared by every worker.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit, urlunsplit

from voicebot.storage.sql import Sql

SCHEMES = ("postgresql", "postgres")


def is_server(db: str) -> bool:
    """A database server's URL (shared by workers), not a local file."""
    return urlsplit(db).scheme in SCHEMES


async def open_sql(db: str, timeout_s: float = 5.0, *sqlite_pragmas: str) -> Sql:
    if is_server(db):
        from voicebot.storage.postgres import connect_postgres  # asyncpg only when used

        return await connect_postgres(db, timeout_s)
    from voicebot.storage.connection import connect_sqlite

    return await connect_sqlite(db, *sqlite_pragmas)


def data_errors(db: str) -> tuple[type[BaseException], ...]:
    """Errors that mean bad data, not an unreachable database (the journal raises
    these instead of keeping the write for later)."""
    if is_server(db):
        from voicebot.storage.postgres import DATA_ERRORS

        return (*DATA_ERRORS, ValueError)
    return (sqlite3.IntegrityError, ValueError)


def unreachable() -> tuple[type[BaseException], ...]:
    """Errors that mean the database could not be reached (a command's clear message)."""
    try:
        import asyncpg
    except ImportError:
        return (OSError, TimeoutError)
    return (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def display(db: str) -> str:
    """A database (or Redis) URL as it may be shown or logged: without a password."""
    parts = urlsplit(db)
    if not parts.scheme or parts.password is None:
        return db
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
