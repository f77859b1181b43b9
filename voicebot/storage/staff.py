"""Staff accounts, their credentials and the audit log, in the calls' database.

Secrets are never stored: passwords as a KDF hash (made by the caller, see
`voicebot.staff.auth`), API tokens and login sessions as the SHA-256 of a
random 256-bit token (a slow KDF buys nothing for a value that long).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.storage.backends import open_sql
from voicebot.storage.sql import Params, Sql, changed, returned
from voicebot.storage.sql import rows as fetch_rows

ROLES = ("agent", "supervisor", "admin")  # each role may do everything the ones before it may



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
    """A store's own connection (SQLite) or pool (PostgreSQL) to the calls' database."""

    def __init__(self, db: str | Path, timeout_s: float = 5.0) -> None:
        self.path = str(db)
        self.timeout_s = timeout_s
        self._sql: Sql | None = None

    async def open(self) -> None:
        self._sql = await open_sql(self.path, self.timeout_s)

    async def close(self) -> None:
        if self._sql is not None:
            sql, self._sql = self._sql, None
            await sql.close()

    @property
    def sql(self) -> Sql:
        if self._sql is None:
            raise RuntimeError("database is not open")
        return self._sql

    async def write(self, statement: str, params: Params = ()) -> int:
        """Run one statement and commit; returns the number of rows it changed."""
        return await changed(self.sql, statement, params)

    async def insert(self, statement: str, params: Params = ()) -> int:
        """Run one `INSERT ... RETURNING <id>` and commit; returns the new row's id."""
        return int(await returned(self.sql, statement, params) or 0)

    async def rows(self, statement: str, params: Params = ()) -> list[dict[str, Any]]:
        return await fetch_rows(self.sql, statement, params)


class StaffStore(Database):
    # --- users -------------------------------------------------------------------
    async def add_user(self, name: str, role: str, password_hash: str = "") -> StaffUser:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        user = StaffUser(name, role, password_hash, time.time())
        await self.write("INSERT INTO staff_users (name, role, password_hash, created_at) "
                         "VALUES (?, ?, ?, ?)", (name, role, password_hash, user.created_at))
        return user

    async def set_user(self, name: str, *, role: str | None = None,
                       password_hash: str | None = None, disabled: bool | None = None) -> bool:
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        changes = {k: v for k, v in (("role", role), ("password_hash", password_hash),
                                     ("disabled", None if disabled is None else int(disabled)))
                   if v is not None}
        if not changes:
            return await self.user(name) is not None
        sets = ", ".join(f"{k} = ?" for k in changes)
        changed = await self.write(f"UPDATE staff_users SET {sets} WHERE name = ?",
                                   [*changes.values(), name])
        if disabled or password_hash is not None:
            # a new password is often set because the old one leaked: whoever had it
            # may have made sessions or API tokens, so they all end with it
            await self.write('DELETE FROM staff_credentials WHERE "user" = ?', (name,))
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
            "INSERT INTO staff_credentials (token_hash, \"user\", kind, label, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (token_hash, user, kind, label, time.time(), expires_at))

    async def user_for_token(self, token_hash: str) -> tuple[StaffUser, str] | None:
        """The enabled user a live credential belongs to, and the credential's kind."""
        rows = await self.rows(
            "SELECT u.*, c.kind AS credential_kind FROM staff_credentials c "
            "JOIN staff_users u ON u.name = c.\"user\" WHERE c.token_hash = ? AND u.disabled = 0 "
            "AND (c.expires_at IS NULL OR c.expires_at > ?)", (token_hash, time.time()))
        if not rows:
            return None
        kind = rows[0].pop("credential_kind")
        return _user(rows[0]), kind

    async def credentials(self, user: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE kind = 'api'", ()) if user is None else (
            "WHERE kind = 'api' AND \"user\" = ?", (user,))
        return await self.rows('SELECT id, "user", label, created_at, expires_at '
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
        await self.write('INSERT INTO staff_audit (at, "user", role, action, call_id, detail) '
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (time.time(), user, role, action, call_id, detail))

    async def audit_log(self, call_id: str = "", limit: int = 500) -> list[dict[str, Any]]:
        where, params = ("WHERE call_id = ?", [call_id]) if call_id else ("", [])
        return await self.rows(f"SELECT * FROM staff_audit {where} ORDER BY seq DESC LIMIT ?",
                               [*params, limit])


def _user(row: dict[str, Any]) -> StaffUser:
    return StaffUser(row["name"], row["role"], row["password_hash"], row["created_at"],
                     bool(row["disabled"]))
