"""The staff desk's own records: the transfer queue, dispositions, feedback on
the bot, CRM webhook deliveries, and read-only queries over the calls table.

A transfer row is written when the dialog decides to hand a call over, so the
queue survives a restart; it moves waiting → claimed → closed (or abandoned
when the caller hangs up before the handoff went through). When the human line
could not take the call (busy, no answer) while the caller was still there,
it becomes `callback`: back in the queue, for someone to call the caller back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.privacy.crypto import NoPrivacy, Privacy
from voicebot.storage.staff import Database

TRANSFER_STATES = ("waiting", "claimed", "callback", "closed", "abandoned")
OPEN_STATES = "('waiting', 'callback')"  # in the queue, for any agent to take
CALL_FILTERS = {"outcome": "c.outcome = ?", "reason": "c.handoff_reason = ?",
                "language": "c.language = ?", "since": "c.started_at >= ?",
                "until": "c.started_at < ?", "status": "t.status = ?"}


@dataclass(frozen=True)
class Feedback:
    call_id: str
    user: str
    kind: str
    utterance: int | None = None
    heard: str = ""
    correction: str = ""
    comment: str = ""


SEALED_COLUMNS = ("summary", "caller", "notes", "heard", "correction", "comment")


class DeskStore(Database):
    """Free text and the caller's number are sealed with `privacy` (see
    `voicebot.storage.sealed`); statuses, times and reasons stay queryable."""

    def __init__(self, db: str | Path, privacy: Privacy | None = None,
                 timeout_s: float = 5.0) -> None:
        super().__init__(db, timeout_s)
        self.privacy = privacy or NoPrivacy()

    async def rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Rows with their sealed columns opened."""
        found = await super().rows(sql, params)
        for row in found:
            for key in SEALED_COLUMNS:
                if isinstance(row.get(key), str):
                    row[key] = self.privacy.unseal(row[key])
            if "caller_sealed" in row:  # the calls table: `caller` is the pseudonym there
                sealed = row.pop("caller_sealed")
                row["caller"] = self.privacy.unseal(sealed) if sealed else row["caller"]
        return found

    async def rewrite(self, value: Callable[[str], str]) -> None:
        """Key rotation: every sealed column through `value`, in one transaction."""
        async with self.sql.transaction() as tx:
            for table, key, columns in (
                    ("desk_transfers", "call_id", ("summary", "caller", "notes")),
                    ("desk_feedback", "seq", ("heard", "correction", "comment"))):
                found, _ = await tx.run(f"SELECT {key}, {', '.join(columns)} FROM {table}")
                for row in found:
                    sets = ", ".join(f"{c} = ?" for c in columns)
                    await tx.run(f"UPDATE {table} SET {sets} WHERE {key} = ?",
                                 [*(value(row[c] or "") for c in columns), row[key]])

    # --- transfers ---------------------------------------------------------------
    async def add_transfer(self, call_id: str, reason: str, summary: str, caller: str,
                           language: str, sentiment: float | None, decided_at: float) -> None:
        await self.write(
            "INSERT INTO desk_transfers (call_id, reason, summary, caller, language, "
            "sentiment, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (call_id, reason, self.privacy.seal(summary), self.privacy.seal(caller), language,
             sentiment, decided_at))

    async def transfer(self, call_id: str) -> dict[str, Any] | None:
        rows = await self.rows("SELECT * FROM desk_transfers WHERE call_id = ?", (call_id,))
        return rows[0] if rows else None

    async def queue(self, user: str | None = None) -> list[dict[str, Any]]:
        """Waiting and call-back transfers, oldest first, then (for `user`) the ones they hold."""
        rows = await self.rows(f"SELECT * FROM desk_transfers WHERE status IN {OPEN_STATES} "
                               "ORDER BY decided_at")
        if user is not None:
            rows += await self.rows("SELECT * FROM desk_transfers WHERE status = 'claimed' "
                                    "AND claimed_by = ? ORDER BY claimed_at", (user,))
        return rows

    async def claim(self, call_id: str, user: str) -> bool:
        """Atomically take a waiting transfer; False if someone else was first."""
        return await self.write(
            "UPDATE desk_transfers SET status = 'claimed', claimed_by = ?, claimed_at = ? "
            f"WHERE call_id = ? AND status IN {OPEN_STATES}", (user, time.time(), call_id)) > 0

    async def dispose(self, call_id: str, disposition: str, notes: str) -> bool:
        return await self.write(
            "UPDATE desk_transfers SET status = 'closed', disposition = ?, notes = ?, "
            "closed_at = ? WHERE call_id = ? AND status IN ('waiting', 'claimed', 'callback')",
            (disposition, self.privacy.seal(notes), time.time(), call_id)) > 0

    async def abandon(self, call_id: str) -> bool:
        return await self.write(
            "UPDATE desk_transfers SET status = 'abandoned', closed_at = ? "
            "WHERE call_id = ? AND status = 'waiting'", (time.time(), call_id)) > 0

    async def erase_calls(self, call_ids: list[str]) -> None:
        """The desk's own rows about these calls (a caller's erasure request)."""
        if not call_ids:
            return
        marks = ", ".join("?" * len(call_ids))
        for table in ("desk_transfers", "desk_feedback", "desk_webhook_deliveries"):
            await self.write(f"DELETE FROM {table} WHERE call_id IN ({marks})", call_ids)
        await self.sql.scrub()

    async def rows_for_calls(self, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The desk's rows about these calls (a caller's export)."""
        marks = ", ".join("?" * len(call_ids)) or "NULL"
        return {table: await self.rows(f"SELECT * FROM desk_{table} WHERE call_id IN ({marks}) "
                                       f"ORDER BY {order}", call_ids)
                for table, order in (("transfers", "decided_at"), ("feedback", "seq"))}

    async def needs_callback(self, call_id: str) -> bool:
        """The human line did not take the call: back to the queue, unclaimed."""
        return await self.write(
            "UPDATE desk_transfers SET status = 'callback', claimed_by = '', claimed_at = NULL "
            "WHERE call_id = ? AND status IN ('waiting', 'claimed')", (call_id,)) > 0

    # --- feedback ----------------------------------------------------------------
    async def add_feedback(self, f: Feedback) -> int:
        return await self.insert(
            'INSERT INTO desk_feedback (call_id, at, "user", kind, utterance, heard, correction, '
            "comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            (f.call_id, time.time(), f.user, f.kind, f.utterance, *map(self.privacy.seal, (
                f.heard, f.correction, f.comment))))

    async def feedback(self, since: float | None = None) -> list[dict[str, Any]]:
        """Feedback joined with what a retuning job needs from the call itself."""
        return await self.rows(
            'SELECT f.seq, f.at, f.call_id, f."user", f.kind, f.utterance, f.heard, f.correction, '
            "f.comment, c.language, c.handoff_reason, c.outcome FROM desk_feedback f "
            "LEFT JOIN calls c ON c.call_id = f.call_id WHERE f.at >= ? ORDER BY f.seq",
            (since or 0.0,))

    # --- CRM webhook -------------------------------------------------------------
    async def add_delivery(self, event: str, call_id: str, attempts: int, delivered: bool,
                           last_error: str) -> None:
        await self.write(
            "INSERT INTO desk_webhook_deliveries (at, event, call_id, attempts, delivered, "
            "last_error) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), event, call_id, attempts, int(delivered), last_error))

    async def deliveries(self, failed_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        where = "WHERE delivered = 0 OR last_error != ''" if failed_only else ""
        return await self.rows(f"SELECT * FROM desk_webhook_deliveries {where} "
                               "ORDER BY seq DESC LIMIT ?", (limit,))

    # --- calls (read-only) -------------------------------------------------------
    async def list_calls(self, filters: dict[str, Any], *, visible_to: str | None = None,
                         limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Calls newest first; `visible_to` limits them to an agent's waiting/held transfers."""
        where, params = [], []
        for key, value in filters.items():
            where.append(CALL_FILTERS[key])
            params.append(value)
        if visible_to is not None:
            where.append(f"(t.status IN {OPEN_STATES} OR t.claimed_by = ?)")
            params.append(visible_to)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return await self.rows(
            "SELECT c.call_id, c.gateway, c.caller, c.caller_sealed, c.language, c.started_at, c.ended_at, "
            "c.outcome, c.handoff_reason, c.summary, t.status AS transfer_status, "
            "t.claimed_by, t.disposition, t.sentiment FROM calls c "
            f"LEFT JOIN desk_transfers t ON t.call_id = c.call_id {clause} "
            "ORDER BY c.started_at DESC LIMIT ? OFFSET ?", [*params, limit, offset])

    async def handoff_reasons(self, since: float, until: float) -> dict[str, int]:
        rows = await self.rows(
            "SELECT handoff_reason AS reason, COUNT(*) AS n FROM calls WHERE outcome = 'handoff' "
            "AND started_at >= ? AND started_at < ? GROUP BY handoff_reason ORDER BY n DESC",
            (since, until))
        return {r["reason"]: r["n"] for r in rows}

    async def disclosure_records(self, since: float) -> list[dict[str, Any]]:
        """Each call's disclosure record, with how much else happened in it."""
        return await self.rows(
            "SELECT c.call_id, c.started_at, c.ended_at, c.outcome, c.disclosure_started_at, "
            "c.disclosure_played_at, c.disclosure_confirmed_by, c.recording_consent, "
            "(SELECT COUNT(*) FROM call_events e WHERE e.call_id = c.call_id "
            " AND e.kind = 'utterance') AS utterances, "
            "(SELECT COUNT(*) FROM call_events e WHERE e.call_id = c.call_id "
            " AND e.kind = 'prompt') AS prompts "
            "FROM calls c WHERE c.started_at >= ? ORDER BY c.started_at", (since,))

    async def outcomes(self, since: float, until: float) -> dict[str, int]:
        rows = await self.rows("SELECT outcome, COUNT(*) AS n FROM calls WHERE started_at >= ? "
                               "AND started_at < ? GROUP BY outcome", (since, until))
        return {r["outcome"] or "in_progress": r["n"] for r in rows}


def feedback_json(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)
