"""Optional CRM webhook: one signed JSON POST per desk event, retried with backoff.

The receiver checks `X-Voicebot-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<X-Voicebot-Timestamp>.<raw body>` under the shared secret (the timestamp is
signed too, so an old request cannot be replayed as new), and may use
`X-Voicebot-Delivery` to drop duplicates: it stays the same across retries.
Every delivery that needed a retry or failed is recorded for admins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

import aiohttp

from voicebot.auth import sign
from voicebot.storage.desk import DeskStore

__all__ = ["CrmWebhook", "sign"]

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class CrmWebhook:
    def __init__(self, url: str, secret: str, store: DeskStore, *, attempts: int = 5,
                 base_delay_s: float = 1.0, timeout_s: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self.store = store
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._http: aiohttp.ClientSession | None = None

    def send(self, event: str, call_id: str, payload: dict[str, Any]) -> None:
        """Deliver in the background; never blocks the caller."""
        task = asyncio.create_task(self.deliver(event, call_id, payload), name=f"webhook-{event}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, event: str, call_id: str, payload: dict[str, Any]) -> bool:
        body = json.dumps({"event": event, "call_id": call_id, **payload},
                          ensure_ascii=False).encode()
        delivery = uuid.uuid4().hex
        error = last_error = ""
        for attempt in range(1, self.attempts + 1):
            error, retry = await self._post(event, delivery, body)
            last_error = error or last_error
            if not error or not retry or attempt == self.attempts:
                break
            await asyncio.sleep(self.base_delay_s * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))
        delivered = not error
        if not delivered:
            log.warning("webhook %s for call %r failed after %d attempts: %s",
                        event, call_id, attempt, error)
        if attempt > 1 or not delivered:
            await self.store.add_delivery(event, call_id, attempt, delivered, last_error)
        return delivered

    async def _post(self, event: str, delivery: str, body: bytes) -> tuple[str, bool]:
        """('', False) on success, else (what went wrong, worth retrying)."""
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Voicebot-Event": event,
                   "X-Voicebot-Delivery": delivery, "X-Voicebot-Timestamp": timestamp,
                   "X-Voicebot-Signature": sign(self.secret, timestamp, body)}
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._http.post(self.url, data=body, headers=headers) as response:
                if response.status < 300:
                    return "", False
                return f"HTTP {response.status}", response.status in RETRY_STATUSES
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__, True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
