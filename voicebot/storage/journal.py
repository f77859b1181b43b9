"""A CallStore wrapper that never loses a write while the database is down.

Writes go to the database while it answers. When one fails (or takes longer
than `timeout_s`), that write and every later one are appended, in order, to a
local append-only file (one JSON line each, flushed and fsynced) instead. A
background task reconnects every `retry_s` seconds; once the database answers,
the journal is replayed into it in order, then removed, and writes go straight
to the database again. A journal left by a previous run is replayed on `open`.

Delivery is at-least-once, never zero: replay progress is saved after every
entry, so a crash in the middle of a replay repeats at most the entry being
written, and a write that timed out may have landed late. Every entry is
idempotent in the store, so a repeat is stored once: a repeated create is a
data error (skipped), an update sets the same values, and an utterance or
prompt is unique per call, kind and instant (`SqlCallStore`).
Data errors (`data_errors`, e.g. a duplicate key) are not outages: they are
raised to the caller and never journalled.

While down, `get` answers from the records created during the outage (so a
call's own handoff can still be looked up) and raises StoreUnavailable for
anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from voicebot.errors import StoreUnavailable
from voicebot.storage.base import EVENT_LISTS, CallRecord, CallStore, utterance_json
from voicebot.types import Source, Utterance, Word

log = logging.getLogger(__name__)

_SCALARS = [f.name for f in fields(CallRecord) if f.name not in EVENT_LISTS.values()]
Entry = dict[str, Any]
T = TypeVar("T")


class JournalledStore:
    def __init__(self, inner: CallStore, path: str | Path, *, timeout_s: float = 5.0,
                 retry_s: float = 1.0, data_errors: tuple[type[BaseException], ...] = (ValueError,),
                 on_journalled: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.path = Path(path)
        self._pos_path = self.path.with_name(self.path.name + ".pos")
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.data_errors = data_errors
        self._on_journalled = on_journalled or (lambda: None)
        self._lock = asyncio.Lock()
        self._up = False
        self._recovery: asyncio.Task[None] | None = None
        self._overlay: dict[str, CallRecord] = {}  # records created while down
        self.pending = 0  # entries in the journal not yet in the database

    @property
    def up(self) -> bool:
        return self._up

    # --- lifecycle -----------------------------------------------------------------
    async def open(self) -> None:
        """Never raises for an unavailable database: calls are answered regardless."""
        self.pending = await asyncio.to_thread(_count_entries, self.path, self._pos_path)
        async with self._lock:
            await self._recover()
        if not self._up:
            self._start_recovery()

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        async with self._lock:
            if not self._up and self.pending:
                await self._recover()  # last chance; otherwise the next start replays
            if self.pending:
                log.warning("database unavailable at shutdown: %d writes kept in %s",
                            self.pending, self.path)
            await _quietly(self.inner.close())

    # --- writes --------------------------------------------------------------------
    async def create(self, record: CallRecord) -> None:
        row = {n: getattr(record, n) for n in _SCALARS}
        await self._write({"op": "create", "record": row}, lambda: self.inner.create(record))

    async def update(self, call_id: str, **values: Any) -> None:
        unknown = set(values) - set(_SCALARS)
        if unknown:
            raise ValueError(f"not call fields: {sorted(unknown)}")
        await self._write({"op": "update", "call_id": call_id, "fields": values},
                          lambda: self.inner.update(call_id, **values))

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        entry = {"op": "utterance", "call_id": call_id, "at": at, "item": utterance_json(utterance)}
        await self._write(entry, lambda: self.inner.add_utterance(call_id, at, utterance))

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        entry = {"op": "prompt", "call_id": call_id, "at": at, "item": dict(prompt)}
        await self._write(entry, lambda: self.inner.add_prompt(call_id, at, prompt))

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        entry = {"op": "transcript", "call_id": call_id, "at": at, "item": dict(item)}
        await self._write(entry, lambda: self.inner.add_transcript(call_id, at, item))

    async def erase_caller(self, caller: str) -> list[str]:
        return await self._erase(lambda: self.inner.erase_caller(caller))

    async def erase_started_before(self, cutoff: float) -> list[str]:
        return await self._erase(lambda: self.inner.erase_started_before(cutoff))

    async def _erase(self, erase: Callable[[], Awaitable[list[str]]]) -> list[str]:
        """Only with the database up and nothing left to replay: an erasure must not
        be undone by journalled writes landing after it."""
        async with self._lock:
            if not self._up or self.pending:
                raise StoreUnavailable("the call database is unavailable or catching up")
            return await asyncio.wait_for(erase(), self.timeout_s)

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        return await self._read(lambda: self.inner.calls_of_caller(caller))

    async def claim_meta(self, name: str, value: str) -> str:
        return await self._read(lambda: self.inner.claim_meta(name, value))

    async def _read(self, op: Callable[[], Awaitable[T]]) -> T:
        """Only with the database up and caught up (exports, the key check)."""
        async with self._lock:
            if not self._up or self.pending:
                raise StoreUnavailable("the call database is unavailable or catching up")
            return await asyncio.wait_for(op(), self.timeout_s)

    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        if self._up:
            try:
                return await asyncio.wait_for(self.inner.get(call_or_gateway_id), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - a read failure is not worth an outage
                log.warning("call store read failed: %s", type(exc).__name__)
        found = self._overlay.get(call_or_gateway_id) or next(
            (r for r in self._overlay.values() if r.gateway_call_id == call_or_gateway_id), None)
        if found is not None:
            return found
        if self._up:
            return None
        raise StoreUnavailable("the call database is unavailable")

    async def _write(self, entry: Entry, apply: Callable[[], Awaitable[None]]) -> None:
        async with self._lock:
            if self._up:
                try:
                    await asyncio.wait_for(apply(), self.timeout_s)
                    return
                except self.data_errors:
                    raise
                except Exception as exc:  # noqa: BLE001 - any other failure is an outage
                    self._went_down(exc)
            await asyncio.to_thread(_append, self.path, entry)
            self.pending += 1
            _apply_to_overlay(self._overlay, entry)
            self._on_journalled()

    # --- outage and recovery ---------------------------------------------------------
    def _went_down(self, exc: BaseException) -> None:
        log.error("call database unavailable (%s): journalling records to %s",
                  type(exc).__name__, self.path)
        self._up = False
        self._start_recovery()

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recovery_loop(), name="store-recovery")

    async def _recovery_loop(self) -> None:
        while not self._up:
            await asyncio.sleep(self.retry_s)
            async with self._lock:
                await self._recover()

    async def _recover(self) -> None:
        """Reconnect and replay the journal; leaves `_up` False on any failure."""
        await _quietly(self.inner.close())
        try:
            await asyncio.wait_for(self.inner.open(), self.timeout_s)
            if self.pending:
                await self._replay()
        except Exception as exc:  # noqa: BLE001
            log.debug("call database still unavailable: %s", type(exc).__name__)
            return
        if not self._up:
            log.info("call database available")
        self._up = True
        self._overlay.clear()

    async def _replay(self) -> None:
        entries, offset = await asyncio.to_thread(_read_entries, self.path, self._pos_path)
        for entry, end in entries:
            try:
                await asyncio.wait_for(self._apply(entry), self.timeout_s)
            except self.data_errors as exc:  # e.g. a create repeated after a crash
                log.warning("journal entry %s skipped: %s", entry.get("op"), type(exc).__name__)
            await asyncio.to_thread(_save_pos, self._pos_path, end)
            self.pending -= 1
        await asyncio.to_thread(_remove, self.path, self._pos_path)
        log.info("replayed %d journalled writes into the call database", len(entries))
        self.pending = 0

    async def _apply(self, entry: Entry) -> None:
        op, call_id = entry["op"], entry.get("call_id", "")
        if op == "create":
            await self.inner.create(CallRecord(**entry["record"]))
        elif op == "update":
            await self.inner.update(call_id, **entry["fields"])
        elif op == "utterance":
            await self.inner.add_utterance(call_id, entry["at"], _utterance(entry["item"]))
        elif op == "prompt":
            await self.inner.add_prompt(call_id, entry["at"], entry["item"])
        elif op == "transcript":
            await self.inner.add_transcript(call_id, entry["at"], entry["item"])
        else:
            raise ValueError(f"unknown journal entry {op!r}")


def _apply_to_overlay(overlay: dict[str, CallRecord], entry: Entry) -> None:
    if entry["op"] == "create":
        record = CallRecord(**entry["record"])
        overlay[record.call_id] = record
        return
    existing = overlay.get(entry["call_id"])
    if existing is None:
        return
    record = existing
    if entry["op"] == "update":
        for key, value in entry["fields"].items():
            setattr(record, key, value)
    else:
        item = {"at": entry["at"], **entry["item"]}
        getattr(record, EVENT_LISTS[entry["op"]]).append(item)


def _utterance(item: dict[str, Any]) -> Utterance:
    words = tuple(Word(w["text"], w["conf"], w["start"], w["end"]) for w in item["words"])
    return Utterance(item["text"], item["confidence"], item["start"], item["end"],
                     Source(item["source"]), item["intent"], words)


async def _quietly(op: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail
        await op


# --- file operations (run on a worker thread) ------------------------------------------
def _append(path: Path, entry: Entry) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # owner-only
    with open(fd, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _read_entries(path: Path, pos_path: Path) -> tuple[list[tuple[Entry, int]], int]:
    """Entries after the saved position, each with the byte offset just past it.
    A torn last line (crash while appending) is ignored: it was never acknowledged."""
    start = _load_pos(pos_path)
    entries: list[tuple[Entry, int]] = []
    if not path.exists():
        return entries, start
    with open(path, "rb") as f:
        f.seek(start)
        offset = start
        for raw in f:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                entries.append((json.loads(raw), offset))
            except ValueError:  # a damaged line cannot be replayed; keep going
                log.error("journal %s: unreadable entry at byte %d skipped", path, offset - len(raw))
    return entries, start


def _count_entries(path: Path, pos_path: Path) -> int:
    return len(_read_entries(path, pos_path)[0])


def _load_pos(pos_path: Path) -> int:
    try:
        return int(pos_path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _save_pos(pos_path: Path, offset: int) -> None:
    tmp = pos_path.with_name(pos_path.name + ".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, pos_path)


def _remove(path: Path, pos_path: Path) -> None:
    for p in (path, pos_path):
        p.unlink(missing_ok=True)
