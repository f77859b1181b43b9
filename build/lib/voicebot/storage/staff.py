"""Staff accounts, their credentials and the audit log, in the calls' SQLite file.

Secrets are never stored: passwords as a KDF hash (made by the caller, see
`voicebot.staff.auth`), API tokens and login sessions as the SHA-256 of a
random 256-bit token (a slow KDF buys nothing for a value that long).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from voicebot.storage.connection import connect

ROLES = ("agent", "supervisor", "admin")  # each role may do everything the ones before it may

_SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS staff_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL REFERENCES staff_users (name),
    kind TEXT NOT NULL,  -- api | session
    label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL  -- NULL = until revoked
);
CREATE TABLE IF NOT EXISTS staff_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS staff_audit_call ON staff_audit (call_id);
"""


@dataclass(frozen=True)
class StaffUser:
    name: str
    role: str
    password_hash: str = ""
    created_at: float = 0.0
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at,
                "disabled": self.disabled, "has_password": bool(self.password_hash)}


class Database:
    """One aiosqlite connection to the calls' database file, opened after the call store."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = str(path)
        self.schema = schema
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await connect(self.path, self.schema)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("database is not open")
        return self._db

    async def write(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run one statement and commit; returns the number of rows it changed."""
        cursor = await self.db.execute(sql, params)
        await self.db.commit()
        return cursor.rowcount

    async def insert(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run one INSERT and commit; returns the new row's id."""
        cursor = await self.db.execute(sql, params)
        await self.db.commit()
        return int(cursor.lastrowid or 0)

    async def rows(
        self, sql: str, params: tuple[Any, ...] | list[Any] = (),
    ) -> list[dict[str, Any]]:
        cursor = await self.db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


class StaffStore(Database):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA)

    # --- users -------------------------------------------------------------------
    async def add_user(self, name: str, role: str, password_hash: str = "") -> StaffUser:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        user = StaffUser(name, role, password_hash, time.time())
        await self.insert("INSERT INTO staff_users (name, role, password_hash, created_at) "
                         "VALUES (?, ?, ?, ?)", (name, role, password_hash, user.created_at))
        return user

    async def set_user(self, name: str, *, role: str | None = None,
                       password_hash: str | None = None, disabled: bool | None = None) -> bool:
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        changes = {k: v for k, v in (("role", role), ("password_hash", password_hash),
                                     ("disabled", disabled)) if v is not None}
        if not changes:
            return await self.user(name) is not None
        sets = ", ".join(f"{k} = ?" for k in changes)
        changed = await self.write(f"UPDATE staff_users SET {sets} WHERE name = ?",
                                   [*changes.values(), name])
        if disabled or password_hash is not None:
            # a new password is often set because the old one leaked: whoever had it
            # may have made sessions or API tokens, so they all end with it
            await self.write("DELETE FROM staff_credentials WHERE user = ?", (name,))
        return changed > 0

    async def user(self, name: str) -> StaffUser | None:
        rows = await self.rows("SELECT * FROM staff_users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    async def users(self) -> list[StaffUser]:
        return [_user(r) for r in await self.rows("SELECT * FROM staff_users ORDER BY name")]

    # --- credentials -------------------------------------------------------------
    async def add_credential(self, token_hash: str, user: str, kind: str, label: str = "",
                             expires_at: float | None = None) -> int:
        return await self.insert(
            "INSERT INTO staff_credentials (token_hash, user, kind, label, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (token_hash, user, kind, label, time.time(), expires_at))

    async def user_for_token(self, token_hash: str) -> tuple[StaffUser, str] | None:
        """The enabled user a live credential belongs to, and the credential's kind."""
        rows = await self.rows(
            "SELECT u.*, c.kind AS credential_kind FROM staff_credentials c "
            "JOIN staff_users u ON u.name = c.user WHERE c.token_hash = ? AND u.disabled = 0 "
            "AND (c.expires_at IS NULL OR c.expires_at > ?)", (token_hash, time.time()))
        if not rows:
            return None
        kind = rows[0].pop("credential_kind")
        return _user(rows[0]), kind

    async def credentials(self, user: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE kind = 'api'", ()) if user is None else (
            "WHERE kind = 'api' AND user = ?", (user,))
        return await self.rows("SELECT id, user, label, created_at, expires_at "
                               f"FROM staff_credentials {where} ORDER BY id", params)

    async def revoke(
        self, *, credential_id: int | None = None, token_hash: str | None = None,
    ) -> bool:
        if credential_id is not None:
            return await self.write("DELETE FROM staff_credentials WHERE id = ? AND kind = 'api'",
                                    (credential_id,)) > 0
        return await self.write("DELETE FROM staff_credentials WHERE token_hash = ?",
                                (token_hash,)) > 0

    # --- audit -------------------------------------------------------------------
    async def audit(self, user: str, role: str, action: str, call_id: str = "",
                    detail: str = "") -> None:
        await self.insert("INSERT INTO staff_audit (at, user, role, action, call_id, detail) "
                          "VALUES (?, ?, ?, ?, ?, ?)",
                          (time.time(), user, role, action, call_id, detail))

    async def audit_log(self, call_id: str = "", limit: int = 500) -> list[dict[str, Any]]:
        where, params = ("WHERE call_id = ?", [call_id]) if call_id else ("", [])
        return await self.rows(f"SELECT * FROM staff_audit {where} ORDER BY seq DESC LIMIT ?",
                               [*params, limit])


def _user(row: dict[str, Any]) -> StaffUser:
    return StaffUser(row["name"], row["role"], row["password_hash"], row["created_at"],
                     bool(row["disabled"]))
