"""The staff desk's state: stores, live feed, knowledge base, CRM webhook, and
the subscriber that turns call events into transfers.

The subscriber runs inside the call's own code path, so it only does
in-memory work (the feed message goes out at once) and hands the database
writes to one ordered worker task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from voicebot.assist.knowledge import KnowledgeBase
from voicebot.assist.sentiment import analyzer, call_sentiment
from voicebot.assist.summary import main_intent
from voicebot.config import Settings
from voicebot.events import CallEnded, CallEvent, HandoffDecided, HumanLineEnded
from voicebot.privacy.crypto import Privacy
from voicebot.staff import shared
from voicebot.staff.auth import Authenticator
from voicebot.staff.feed import FeedHub
from voicebot.staff.throttle import PerWorker, Throttle
from voicebot.staff.webhook import CrmWebhook
from voicebot.storage.base import utterance_json
from voicebot.storage.desk import DeskStore
from voicebot.storage.staff import StaffStore

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


class StaffDesk:
    def __init__(self, settings: Settings, privacy: Privacy | None = None) -> None:
        self.settings = settings
        self.staff = StaffStore(settings.db, settings.db_timeout_s)
        self.privacy = privacy
        self.desk = DeskStore(settings.db, privacy, settings.db_timeout_s)
        self.auth = Authenticator(self.staff, settings.staff_token)
        self.feed = FeedHub()
        self.throttle: Throttle = PerWorker()
        self.redis = shared.connect(settings.redis_url) if settings.redis_url else None
        self.shared_feed = shared.RedisFeed(self.redis, self.feed) if self.redis else None
        if self.redis is not None:
            self.throttle = shared.SharedThrottle(self.redis)
        self.kb = KnowledgeBase([])
        self.webhook: CrmWebhook | None = None
        if settings.crm_webhook_url:
            self.webhook = CrmWebhook(settings.crm_webhook_url, settings.crm_webhook_secret,
                                      self.desk)
        self._jobs: asyncio.Queue[Job | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """After the call store has created the calls table."""
        await self.staff.open()
        await self.desk.open()
        loop = asyncio.get_running_loop()
        self.kb = await loop.run_in_executor(None, KnowledgeBase.from_folder,
                                             self.settings.knowledge_dir)
        await loop.run_in_executor(None, analyzer)  # load the sentiment lexicon once, off-loop
        log.info("staff desk: %d knowledge articles, CRM webhook %s", len(self.kb.articles),
                 "on" if self.webhook else "off")
        self._worker = asyncio.create_task(self._work(), name="staff-desk-writer")
        if self.shared_feed is not None:
            await self.shared_feed.open()

    async def close(self) -> None:
        self.feed.close()
        if self.shared_feed is not None:
            await self.shared_feed.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self._worker is not None:
            self._jobs.put_nowait(None)
            await asyncio.wait({self._worker}, timeout=5)
            self._worker.cancel()
        if self.webhook is not None:
            await self.webhook.close()
        await self.desk.close()
        await self.staff.close()

    # --- call events (synchronous: called from the call's code path) ------------------
    def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, HandoffDecided):
            self._handoff_decided(event)
        elif isinstance(event, CallEnded) and event.outcome == "abandoned":
            self._jobs.put_nowait(lambda: self._abandoned(event.call_id))
        elif isinstance(event, HumanLineEnded) and not event.connected:
            self._jobs.put_nowait(lambda: self._not_connected(event))

    def _handoff_decided(self, e: HandoffDecided) -> None:
        utterances = [utterance_json(u) for u in e.transcript]
        mood = call_sentiment(utterances, e.language)
        transfer = {"call_id": e.call_id, "reason": str(e.reason), "summary": e.summary,
                    "caller": e.caller, "language": e.language, "sentiment": mood.score,
                    "decided_at": e.at, "status": "waiting", "claimed_by": ""}
        self.feed.publish({"type": "transfer", "transfer": {
            **transfer, "sentiment_label": mood.label, "intent": main_intent(utterances)}})

        async def store() -> None:
            await self.desk.add_transfer(e.call_id, str(e.reason), e.summary, e.caller,
                                         e.language, mood.score, e.at)
        self._jobs.put_nowait(store)
        self.notify_crm("transfer.created", e.call_id, {
            "reason": str(e.reason), "summary": e.summary, "language": e.language,
            "intent": main_intent(utterances), "sentiment": mood.score, "at": e.at})

    async def _abandoned(self, call_id: str) -> None:
        if await self.desk.abandon(call_id):
            self.publish_update(call_id, "abandoned")

    async def _not_connected(self, e: HumanLineEnded) -> None:
        """No person took the call: a caller still on the line was promised a call
        back (the transfer returns to the queue); one who left has abandoned it."""
        if e.caller_waiting:
            if await self.desk.needs_callback(e.call_id):
                self.publish_update(e.call_id, "callback", line=e.status)
                self.notify_crm("transfer.callback", e.call_id, {"line": e.status, "at": e.at})
        else:
            await self._abandoned(e.call_id)

    # --- used by the routes -------------------------------------------------------------
    def publish_update(self, call_id: str, status: str, **extra: Any) -> None:
        self.feed.publish({"type": "transfer_update", "call_id": call_id, "status": status,
                           "at": time.time(), **extra})

    async def settled(self) -> None:
        """Returns once every desk change queued before this call is done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            done.set_result(None)
        self._jobs.put_nowait(mark)
        await done

    def notify_crm(self, event: str, call_id: str, payload: dict[str, Any]) -> None:
        """Case data only (no transcript): the CRM gets what it needs to open a case."""
        if self.webhook is not None:
            self.webhook.send(event, call_id, payload)

    async def _work(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                await job()
            except Exception:  # one failed write must not stop the queue
                log.exception("staff desk: storing a transfer update failed")
