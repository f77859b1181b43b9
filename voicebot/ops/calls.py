"""Stored calls as the reports read them: one `CallFacts` per call, with its
speech turns, the staff's corrections and its labels.

`CallSource` is the narrow read interface; `SqlCallSource` reads the calls'
database, SQLite or PostgreSQL (calls, call_events, desk_feedback, desk_transfers, call_tags) and
`StaticCallSource` serves a list (tests, other stores). Caller numbers are
only used to count repeat callers and never leave this layer's callers'
memory: reports print counts, not numbers.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from voicebot.ops.tags import TagStore
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.desk import DeskStore

REVIEW_KINDS = ("transcript_wrong", "reviewed_ok")  # feedback that means someone read the transcript


@dataclass(frozen=True)
class Turn:
    """One recognised caller utterance and, when staff reviewed the call, what was really said."""

    text: str
    confidence: float
    intent: str | None
    correction: str | None = None  # set only where staff marked the transcript wrong


@dataclass(frozen=True)
class CallFacts:
    call_id: str
    started_at: float
    ended_at: float | None = None
    outcome: str = ""  # completed | handoff | abandoned | "" (in progress)
    handoff_reason: str = ""
    language: str = "en"
    gateway: str = ""
    caller: str = ""  # as stored (number or pseudonym); only compared, never printed
    turns: tuple[Turn, ...] = ()
    reviewed: bool = False  # staff read the transcript: its unmarked turns count as right
    labels: dict[str, str] = field(default_factory=dict)
    survey: str = ""  # "" not offered; offered, rated, or how it was skipped
    csat: int | None = None  # 1-5 when rated

    @property
    def handle_s(self) -> float | None:
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)


class CallSource(Protocol):
    async def calls(self, since: float, until: float) -> list[CallFacts]: ...


@dataclass
class StaticCallSource:
    items: list[CallFacts]

    async def calls(self, since: float, until: float) -> list[CallFacts]:
        return [c for c in self.items if since <= c.started_at < until]


Reveal = Callable[[dict[str, Any]], dict[str, Any]]


class SqlCallSource:
    """Opens the database read-mostly (creating the tables if the file is new).

    Where stored text is sealed, `desk` opens a DeskStore that unseals its columns
    and `reveal` opens each stored utterance (text and words)."""

    def __init__(self, path: str | Path, *, desk: Callable[[str], DeskStore] = DeskStore,
                 reveal: Reveal | None = None) -> None:
        self.path = str(path)
        self._desk = desk
        self._reveal = reveal

    async def calls(self, since: float, until: float) -> list[CallFacts]:
        store, desk, tags = SqlCallStore(self.path), self._desk(self.path), TagStore(self.path)
        await store.open()
        await desk.open()
        await tags.open()
        try:
            return await _load(desk, since, until, self._reveal)
        finally:
            await tags.close()
            await desk.close()
            await store.close()


async def _load(db: DeskStore, since: float, until: float, reveal: Reveal | None
                ) -> list[CallFacts]:
    """Rows are read on aiosqlite's thread and put together on another: with tens of
    thousands of calls, parsing them would hold up every live call's audio."""
    window = (since, until)
    scope = "call_id IN (SELECT call_id FROM calls WHERE started_at >= ? AND started_at < ?)"
    rows = _Rows(
        await db.rows(
            "SELECT call_id, started_at, ended_at, outcome, handoff_reason, language, gateway, "
            "caller, survey, csat FROM calls WHERE started_at >= ? AND started_at < ? ORDER BY started_at",
            window),
        await db.rows(f"SELECT call_id, payload FROM call_events WHERE kind = 'utterance' "
                      f"AND {scope} ORDER BY seq", window),
        await db.rows(f"SELECT call_id, kind, utterance, correction FROM desk_feedback "
                      f"WHERE {scope} ORDER BY seq", window),
        await db.rows(f"SELECT call_id FROM desk_transfers WHERE disposition != '' AND {scope}",
                      window),
        await db.rows(f"SELECT call_id, key, value FROM call_tags WHERE {scope}", window))
    work = functools.partial(_assemble, rows, reveal or (lambda item: item))
    return await asyncio.get_running_loop().run_in_executor(None, work)


@dataclass(frozen=True)
class _Rows:
    calls: list[dict[str, Any]]
    utterances: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    closed_transfers: list[dict[str, Any]]
    labels: list[dict[str, Any]]


def _assemble(rows: _Rows, reveal: Reveal) -> list[CallFacts]:
    turns: dict[str, list[dict[str, Any]]] = {}
    for row in rows.utterances:
        turns.setdefault(row["call_id"], []).append(reveal(json.loads(row["payload"])))
    corrections: dict[tuple[str, int], str] = {}
    reviewed: set[str] = set()
    for row in rows.feedback:
        if row["kind"] in REVIEW_KINDS:
            reviewed.add(row["call_id"])
        if row["kind"] == "transcript_wrong" and row["utterance"] is not None:
            corrections[(row["call_id"], row["utterance"])] = row["correction"]
    # an agent closed these with the transcript in front of them
    reviewed.update(row["call_id"] for row in rows.closed_transfers)
    labels: dict[str, dict[str, str]] = {}
    for row in rows.labels:
        labels.setdefault(row["call_id"], {})[row["key"]] = row["value"]
    return [_facts(c, turns.get(c["call_id"], []), corrections, c["call_id"] in reviewed,
                   labels.get(c["call_id"], {})) for c in rows.calls]


def _facts(row: dict[str, Any], utterances: list[dict[str, Any]],
           corrections: dict[tuple[str, int], str], reviewed: bool,
           labels: dict[str, str]) -> CallFacts:
    """The desk's utterance index counts every stored utterance (key presses too)."""
    call_id = row["call_id"]
    turns = tuple(
        Turn(u["text"], float(u["confidence"]), u.get("intent"), corrections.get((call_id, i)))
        for i, u in enumerate(utterances) if u.get("source", "speech") == "speech")
    return CallFacts(call_id, row["started_at"] or 0.0, row["ended_at"], row["outcome"] or "",
                     row["handoff_reason"] or "", row["language"] or "", row["gateway"] or "",
                     row["caller"] or "", turns, reviewed, labels, row["survey"] or "",
                     _rating(row["csat"]))


def _rating(value: Any) -> int | None:
    """Columns added later hold '' in older rows; only 1-5 is a rating."""
    return value if isinstance(value, int) and 1 <= value <= 5 else None
