"""Where a finished free-form transcript goes: the call record (and so
`GET /api/calls/{id}`), a live notice to every open desk, and, for a
handed-over call, the CRM webhook (`transfer.transcript`), each beside the
decision engine's words for the same utterance ("what the bot understood").

The feed notice carries no text: a desk showing that call reloads it through
`GET /api/calls/{id}`, which checks who may read it and audits the read.
"""

from __future__ import annotations

import time
from typing import Any

from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.transcript.base import FreeText


class DeskSink:
    def __init__(self, store: CallStore, desk: StaffDesk) -> None:
        self.store = store
        self.desk = desk

    async def deliver(self, call_id: str, text: FreeText, handed_over: bool) -> None:
        at = time.time()
        item = text.to_json()
        try:
            await self.store.add_transcript(call_id, at, item)
        finally:  # a desk learns of it even if this write went to the journal or failed
            self.desk.feed.publish({"type": "transcript", "call_id": call_id,
                                    "start": item["start"], "status": text.status, "at": at})
        if handed_over:
            await self._to_crm(call_id, text)

    async def handed_over(self, call_id: str, texts: list[FreeText]) -> None:
        for text in texts:  # transcribed before the handoff decision (VOICEBOT_TRANSCRIPT_CALLS=all)
            await self._to_crm(call_id, text)

    async def _to_crm(self, call_id: str, text: FreeText) -> None:
        if self.desk.webhook is not None:
            self.desk.notify_crm("transfer.transcript", call_id, {
                "transcript": text.to_json(),
                "understood": await self._understood(call_id, text.start), "at": time.time()})

    async def _understood(self, call_id: str, start: float) -> dict[str, Any] | None:
        """The decision engine's utterance for the same audio, if it is stored yet."""
        record = await self.store.get(call_id)
        for u in record.utterances if record else ():
            if abs(u.get("start", -1) - start) < 1e-3:
                return {k: u[k] for k in ("text", "confidence", "intent") if k in u}
        return None
