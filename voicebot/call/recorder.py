"""Writes one call's record as the call happens.

Store errors are logged and swallowed here: a database problem must never
take a caller's call down with it (it is handed to a human or completes as
usual). Nothing personal goes to the log: ids and reasons only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from voicebot.call.player import Playout
from voicebot.handoff.context import HandoffContext
from voicebot.storage.base import CallRecord, CallStore
from voicebot.types import Outcome, Utterance

log = logging.getLogger(__name__)


class CallRecorder:
    def __init__(self, store: CallStore, record: CallRecord) -> None:
        self.store = store
        self.record = record
        self._outcome_written = False

    @property
    def call_id(self) -> str:
        return self.record.call_id

    async def started(self, disclosure_text: str) -> None:
        self.record.started_at = time.time()
        self.record.disclosure_text = disclosure_text
        await self._safe("create", self.store.create(self.record))

    async def disclosure_starting(self) -> None:
        if self.record.disclosure_started_at is None:
            self.record.disclosure_started_at = time.time()
            await self._update(disclosure_started_at=self.record.disclosure_started_at)

    async def prompt_played(self, playout: Playout) -> None:
        say = playout.say
        prompt = {"name": say.name, "text": say.text, "started_at": playout.started_at,
                  "finished_at": playout.finished_at, "confirmed_by": playout.confirmed_by}
        self.record.prompts.append(prompt)
        await self._safe("prompt", self.store.add_prompt(self.call_id, playout.started_at, prompt))
        if say.name == "disclosure" and playout.confirmed_by != "interrupted":
            self.record.disclosure_played_at = playout.finished_at
            self.record.disclosure_confirmed_by = playout.confirmed_by
            await self._update(disclosure_played_at=playout.finished_at,
                               disclosure_confirmed_by=playout.confirmed_by)

    async def recording_consent(self, answer: str) -> None:
        """"asked", then the caller's answer (see dialog.policy.RecordingConsent)."""
        await self._update(recording_consent=answer)

    async def utterance(self, u: Utterance) -> None:
        await self._safe("utterance", self.store.add_utterance(self.call_id, time.time(), u))

    async def survey(self, status: str, rating: int | None) -> None:
        await self._update(survey=status, csat=rating)

    async def handed_off(self, ctx: HandoffContext) -> None:
        self._outcome_written = True
        await self._update(outcome=str(Outcome.HANDOFF), handoff_reason=str(ctx.reason),
                           handoff_target=ctx.target, summary=ctx.summary)

    async def finished(self, outcome: Outcome, summary: str) -> None:
        self._outcome_written = True
        await self._update(outcome=str(outcome), summary=summary)

    async def ended(self, fallback: Outcome | None, summary: str) -> None:
        """Close the record; `fallback` applies only if no outcome was written yet."""
        fields: dict[str, Any] = {"ended_at": time.time()}
        if not self._outcome_written:
            fields.update(outcome=str(fallback or Outcome.ABANDONED), summary=summary)
        await self._update(**fields)

    async def _update(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self.record, key, value)
        await self._safe("update", self.store.update(self.call_id, **fields))

    async def _safe(self, what: str, op: Any) -> None:
        try:
            await op
        except Exception as exc:  # noqa: BLE001 - see module docstring
            log.error("call %r: storing %s failed: %s", self.call_id, what, type(exc).__name__)
