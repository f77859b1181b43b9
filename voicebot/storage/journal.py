"""A CallStore wrapper that keeps the database off the call's path and never
loses a write while the database is slow or down.

Writes return at once: they join a bounded queue that one task drains, in
order, into the database. When a write fails or takes longer than `timeout_s`
(an outage), or the queue overflows (a database slower than the calls), that
write and every later one are appended, in order, to a local append-only file
(one JSON line each, fsynced) instead. A background task reconnects every
`retry_s` seconds and replays the journal into the database in order, while
new writes keep going to the journal's end; once it has caught up, the journal
is removed and writes go straight to the database again. A journal left by a
previous run is replayed on `open`. Nothing holds a lock across a database
call: the only lock keeps an append and the replay's hand-back apart.

Delivery is at-least-once, never zero, for every write accepted before
`close()` returns: replay progress is saved after every entry, so a crash in
the middle of a replay repeats at most the entry being written, and a write
given up on (timed out, or overtaken by an overflow) may have landed late.
Every entry is idempotent in the store, so a repeat is stored once: a repeated
create is a data error (skipped), an update sets the same values, and an
utterance or prompt is unique per call, kind and instant (`SqlCallStore`).
Data errors (`data_errors`, e.g. a duplicate key) are not outages: the write
is logged and dropped, never journalled. Writes still queued when the process
dies are lost: `close()` drains the queue (into the journal if need be).

`get` sees a call's writes that are not in the database yet (queued or
journalled), so a call's own handoff can be looked up at once, even during an
outage; anything else it cannot read then raises StoreUnavailable. Erasures
and exports run in the queue's order, with the database up and caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from voicebot.errors import StoreUnavailable
from voicebot.storage import journal_file as jf
from voicebot.storage.base import EVENT_LISTS, CallRecord, CallStore, utterance_json
from voicebot.types import Source, Utterance, Word

log = logging.getLogger(__name__)

_SCALARS = [f.name for f in fields(CallRecord) if f.name not in EVENT_LISTS.values()]
Entry = jf.Entry
T = TypeVar("T")


@dataclass
class _InOrder:
    """A read, an erasure or a flush, run where it stands in the write queue."""

    run: Callable[[], Awaitable[Any]] | None  # None: a flush (earlier writes stored or journalled)
    done: asyncio.Future[Any]


class JournalledStore:
    def __init__(self, inner: CallStore, path: str | Path, *, timeout_s: float = 5.0,
                 retry_s: float = 1.0, queue_size: int = 1000,
                 data_errors: tuple[type[BaseException], ...] = (ValueError,),
                 on_journalled: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.path = Path(path)
        self._pos_path = self.path.with_name(self.path.name + ".pos")
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.queue_size = queue_size
        self.data_errors = data_errors
        self._on_journalled = on_journalled or (lambda: None)
        self._queue: deque[Entry | _InOrder] = deque()
        self._wake = asyncio.Event()
        self._overflow = asyncio.Event()  # the queue is full: journal what it holds now
        self._file_lock = asyncio.Lock()  # an append vs the replay handing back to the database
        self._up = False
        self._to_journal = False  # the entry at the queue's head was given up on: journal it
        self._journalling = False  # writes go to the journal until a replay has caught up
        self._closed = False
        self._drain_task: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._unstored: dict[str, list[Entry]] = {}  # per call: writes not in the database yet
        self.pending = 0  # entries in the journal not yet in the database

    @property
    def up(self) -> bool:
        """The database answers and the journal is replayed: writes go straight to it."""
        return self._direct

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def _direct(self) -> bool:
        return self._up and not self._journalling

    # --- lifecycle -----------------------------------------------------------------
    async def open(self) -> None:
        """Never raises for an unavailable database: calls are answered regardless."""
        self.pending = await asyncio.to_thread(jf.count_entries, self.path, self._pos_path)
        self._journalling = self.pending > 0
        self._drain_task = asyncio.create_task(self._drain(), name="store-writes")
        await self._recover()
        if not self._direct:
            self._start_recovery()

    async def close(self) -> None:
        """Store or journal every write accepted so far, then close the database."""
        if self._drain_task is not None:
            try:
                await asyncio.wait_for(self.flush(), self.timeout_s)
            except TimeoutError:  # a slow database: the rest goes to the journal
                self._overflow.set()
                await self.flush()
            self._closed = True
            self._wake.set()
            try:  # it returns once the queue is empty
                await asyncio.wait_for(asyncio.shield(self._drain_task), 2 * self.timeout_s)
            except TimeoutError:
                self._drain_task.cancel()
                await asyncio.gather(self._drain_task, return_exceptions=True)
                await self._journal_left_over()
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        if self._journalling:
            await self._recover()  # last chance; otherwise the next start replays
        if self.pending:
            log.warning("database unavailable at shutdown: %d writes kept in %s",
                        self.pending, self.path)
        await _quietly(self.inner.close())

    async def _journal_left_over(self) -> None:
        left = [item for item in self._queue if not isinstance(item, _InOrder)]
        for item in self._queue:
            if isinstance(item, _InOrder):
                _fail(item.done, StoreUnavailable("the call store is closing"))
        self._queue.clear()
        if left:
            await asyncio.to_thread(jf.append, self.path, left)
            self.pending += len(left)
            self._journalling = True

    async def flush(self) -> None:
        """Returns once every write made before it is in the database or the journal."""
        await self._in_order(None)

    # --- writes: queued, never awaited by the caller ---------------------------------
    async def create(self, record: CallRecord) -> None:
        self._enqueue({"op": "create", "call_id": record.call_id,
                       "record": {n: getattr(record, n) for n in _SCALARS}})

    async def update(self, call_id: str, **values: Any) -> None:
        unknown = set(values) - set(_SCALARS)
        if unknown:
            raise ValueError(f"not call fields: {sorted(unknown)}")
        self._enqueue({"op": "update", "call_id": call_id, "fields": values})

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        self._enqueue({"op": "utterance", "call_id": call_id, "at": at, "item": utterance_json(utterance)})

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        self._enqueue({"op": "prompt", "call_id": call_id, "at": at, "item": dict(prompt)})

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        self._enqueue({"op": "transcript", "call_id": call_id, "at": at, "item": dict(item)})

    def _enqueue(self, entry: Entry) -> None:
        if self._closed:  # too late for the queue: straight to the journal, blocking
            log.warning("a %s came after the call store closed: journalled", entry["op"])
            jf.append(self.path, [entry])
            self.pending += 1
            self._journalling = True
            return
        self._queue.append(entry)
        self._unstored.setdefault(entry["call_id"], []).append(entry)
        if len(self._queue) > self.queue_size:
            self._overflow.set()
        self._wake.set()

    # --- reads and erasures ------------------------------------------------------------
    async def erase_caller(self, caller: str) -> list[str]:
        return await self._in_order(lambda: self.inner.erase_caller(caller))

    async def erase_started_before(self, cutoff: float) -> list[str]:
        return await self._in_order(lambda: self.inner.erase_started_before(cutoff))

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        return await self._in_order(lambda: self.inner.calls_of_caller(caller))

    async def claim_meta(self, name: str, value: str) -> str:
        return await self._in_order(lambda: self.inner.claim_meta(name, value))

    async def _in_order(self, run: Callable[[], Awaitable[T]] | None) -> T:
        """Runs `run` after every earlier write is stored, with the database up and
        caught up (an erasure must not be undone by journalled writes landing after
        it; an export must hold them); StoreUnavailable otherwise."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_InOrder(run, done))
        self._wake.set()
        return await done

    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        # taken first: a write stored while the database is read leaves `_unstored`
        unstored_now = {call_id: list(entries) for call_id, entries in self._unstored.items()}
        record, failed = None, not self._up
        if self._up:
            try:
                record = await asyncio.wait_for(self.inner.get(call_or_gateway_id), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - a read failure is not worth an outage
                log.warning("call store read failed: %s", type(exc).__name__)
                failed = True
        call_id = record.call_id if record is not None else _created(unstored_now, call_or_gateway_id)
        unstored = unstored_now.get(call_id or "", [])
        if record is None:
            if not unstored or unstored[0]["op"] != "create":
                if failed:
                    raise StoreUnavailable("the call database is unavailable")
                return None
            record = CallRecord(**unstored[0]["record"])
        for entry in unstored:
            _apply_to_record(record, entry)
        return record

    # --- the queue's one writer ----------------------------------------------------------
    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            elif self._overflow.is_set() or self._to_journal or not self._direct:
                await self._journal_queued()
            else:
                item = self._queue.popleft()
                if isinstance(item, _InOrder):
                    await self._run_in_order(item)
                else:
                    await self._store(item)

    async def _store(self, entry: Entry) -> None:
        """Write one entry to the database; on an outage or an overflow it goes
        back to the queue's head, and from there to the journal."""
        write = asyncio.create_task(self._apply(entry), name="store-write")
        overflow = asyncio.create_task(self._overflow.wait(), name="store-overflow")
        try:
            await asyncio.wait({write, overflow}, timeout=self.timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # close() gave up on the drain: the entry is journalled
            write.cancel()
            overflow.cancel()
            self._queue.appendleft(entry)
            raise
        overflow.cancel()
        if write.done() and not write.cancelled():
            exc = write.exception()
            if exc is None or isinstance(exc, self.data_errors):
                if exc is not None:
                    log.warning("call store refused a %s: %s (not journalled)", entry["op"],
                                type(exc).__name__)
                self._stored(entry)
                return
            self._went_down(exc)
        elif not self._overflow.is_set():
            self._went_down(TimeoutError())
        # given up on: it may still land (at-least-once; entries are idempotent). It goes
        # to the journal whatever the recovery does meanwhile, so it cannot overtake it.
        self._queue.appendleft(entry)
        self._to_journal = True
        write.cancel()
        await asyncio.gather(write, overflow, return_exceptions=True)

    async def _journal_queued(self) -> None:
        """Append everything queued, in order, with one fsync; answer the reads,
        erasures and flushes among it where they stand."""
        batch: list[Entry] = []
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _InOrder):
                await self._append(batch)
                batch = []
                if item.run is None:
                    _settle(item.done, None)
                else:
                    _fail(item.done, StoreUnavailable("the call database is unavailable or catching up"))
            else:
                batch.append(item)
        await self._append(batch)
        self._overflow.clear()
        self._to_journal = False

    async def _append(self, batch: list[Entry]) -> None:
        if not batch:
            return
        async with self._file_lock:
            await asyncio.to_thread(jf.append, self.path, batch)
            self.pending += len(batch)
            self._journalling = True
        for _ in batch:
            self._on_journalled()
        self._start_recovery()

    async def _run_in_order(self, item: _InOrder) -> None:
        if item.run is None:
            _settle(item.done, None)
            return
        try:
            _settle(item.done, await asyncio.wait_for(item.run(), self.timeout_s))
        except Exception as exc:  # noqa: BLE001 - the caller gets it
            _fail(item.done, exc)

    def _stored(self, entry: Entry) -> None:
        """`entry` is in the database: `get` need not add it any more."""
        call_id = entry.get("call_id") or entry["record"]["call_id"]
        entries = self._unstored.get(call_id)
        if entries:
            entries.pop(0)  # a call's entries are stored in the order they came
            if not entries:
                del self._unstored[call_id]

    # --- outage and recovery ---------------------------------------------------------
    def _went_down(self, exc: BaseException) -> None:
        if self._up:
            log.error("call database unavailable (%s): journalling records to %s",
                      type(exc).__name__, self.path)
        self._up = False
        self._start_recovery()

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recovery_loop(), name="store-recovery")

    async def _recovery_loop(self) -> None:
        while not self._direct:
            await asyncio.sleep(self.retry_s)
            await self._recover()

    async def _recover(self) -> None:
        """Reconnect if down, and replay the journal; on any failure the store is down."""
        try:
            if not self._up:
                await _quietly(self.inner.close())
                await asyncio.wait_for(self.inner.open(), self.timeout_s)
                log.info("call database available")
                self._up = True
            await self._replay()
        except Exception as exc:  # noqa: BLE001
            log.debug("call database still unavailable: %s", type(exc).__name__)
            self._up = False

    async def _replay(self) -> None:
        """Replay until caught up; new writes go on being appended meanwhile."""
        replayed = 0
        while True:
            entries, _ = await asyncio.to_thread(jf.read_entries, self.path, self._pos_path)
            if not entries:
                async with self._file_lock:  # no append under way: hand back to the database
                    entries, _ = await asyncio.to_thread(jf.read_entries, self.path, self._pos_path)
                    if not entries:
                        await asyncio.to_thread(jf.remove, self.path, self._pos_path)
                        self.pending = 0
                        self._journalling = False
                        break
            for entry, end in entries:
                try:
                    await asyncio.wait_for(self._apply(entry), self.timeout_s)
                except self.data_errors as exc:  # e.g. a create repeated after a crash
                    log.warning("journal entry %s skipped: %s", entry.get("op"), type(exc).__name__)
                await asyncio.to_thread(jf.save_pos, self._pos_path, end)
                self.pending = max(0, self.pending - 1)
                self._stored(entry)
                replayed += 1
        if replayed:
            log.info("replayed %d journalled writes into the call database", replayed)

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


def _created(unstored: dict[str, list[Entry]], call_or_gateway_id: str) -> str | None:
    """The call whose creation is not in the database yet that has this id."""
    if call_or_gateway_id in unstored:
        return call_or_gateway_id
    return next((call_id for call_id, entries in unstored.items()
                 if entries and entries[0]["op"] == "create"
                 and entries[0]["record"]["gateway_call_id"] == call_or_gateway_id), None)


def _apply_to_record(record: CallRecord, entry: Entry) -> None:
    """Add a write the database does not have yet to a record read from it."""
    if entry["op"] == "update":
        for key, value in entry["fields"].items():
            setattr(record, key, value)
    elif entry["op"] in EVENT_LISTS:
        events = getattr(record, EVENT_LISTS[entry["op"]])
        if not any(e.get("at") == entry["at"] for e in events):  # stored meanwhile
            events.append({"at": entry["at"], **entry["item"]})


def _settle(done: asyncio.Future[Any], value: Any) -> None:
    if not done.done():
        done.set_result(value)


def _fail(done: asyncio.Future[Any], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


def _utterance(item: dict[str, Any]) -> Utterance:
    words = tuple(Word(w["text"], w["conf"], w["start"], w["end"]) for w in item["words"])
    return Utterance(item["text"], item["confidence"], item["start"], item["end"],
                     Source(item["source"]), item["intent"], words)


async def _quietly(op: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail
        await op
