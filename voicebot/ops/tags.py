"""Caller-group labels of each call, kept for the reports' fairness splits.

Written from the event bus (`CallStarted` gives the line's sample rate,
`CallTagged` any label the deployment attaches: a Twilio `<Parameter
name="segment_...">`, a flow variable, an A/B variant), into their own table
in the calls' database. Labels are never personal data: keys are short
identifiers, values short strings, and a label that is neither is dropped.
"""

from __future__ import annotations

import asyncio
import logging

from voicebot.events import CallEvent, CallStarted, CallTagged
from voicebot.storage.staff import Database
from voicebot.types import LABEL_KEY

log = logging.getLogger(__name__)

KEY = LABEL_KEY
MAX_VALUE = 64


def line_label(rate: int) -> str:
    return "narrowband" if rate <= 8000 else "wideband"


def valid_label(key: str, value: str) -> bool:
    return bool(KEY.fullmatch(key)) and 0 < len(value) <= MAX_VALUE and value.isprintable()


class TagStore(Database):
    """The `call_tags` table (a trigger deletes a call's labels with the call)."""

    async def open(self) -> None:
        """Labels whose call is gone (erased before the trigger existed) go too; at
        start-up no call is in progress, so no label is waiting for its call row."""
        await super().open()
        await self.write("DELETE FROM call_tags WHERE call_id NOT IN (SELECT call_id FROM calls)")

    async def put(self, call_id: str, key: str, value: str) -> None:
        await self.write("INSERT INTO call_tags (call_id, key, value) VALUES (?, ?, ?) "
                         "ON CONFLICT (call_id, key) DO UPDATE SET value = excluded.value",
                         (call_id, key, value))

    async def erase_calls(self, call_ids: list[str]) -> None:
        if call_ids:
            marks = ", ".join("?" * len(call_ids))
            await self.write(f"DELETE FROM call_tags WHERE call_id IN ({marks})", call_ids)


class CallTagger:
    """Bus subscriber: queues each label and writes them in order on one task."""

    def __init__(self, tags: TagStore) -> None:
        self.tags = tags
        self._queue: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.tags.open()
        self._worker = asyncio.create_task(self._work(), name="call-tags-writer")

    async def close(self) -> None:
        if self._worker is not None:
            self._queue.put_nowait(None)
            await asyncio.wait({self._worker}, timeout=5)
            self._worker.cancel()
        await self.tags.close()

    def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            self._queue.put_nowait((event.call_id, "line", line_label(event.line_rate)))
        elif isinstance(event, CallTagged):
            if valid_label(event.key, event.value):
                self._queue.put_nowait((event.call_id, event.key, event.value))
            else:
                log.warning("call %s: label dropped (key must be [a-z][a-z0-9_]*, value short)",
                            event.call_id)

    async def _work(self) -> None:
        while (item := await self._queue.get()) is not None:
            try:
                await self.tags.put(*item)
            except Exception as exc:  # noqa: BLE001 - a lost label must not stop the others
                log.error("call %s: storing a label failed: %s", item[0], type(exc).__name__)
