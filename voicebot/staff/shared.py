"""State the workers of one deployment share through Redis (`VOICEBOT_REDIS_URL`).

- The live desk feed: every worker publishes its desk messages (a transfer, an
  update, a transcript line) on one pub/sub channel and relays the channel to
  the desks connected to it, so a desk on any worker sees every call's
  transfers live. Publishing never blocks a call: messages wait in a bounded
  outbox for one publisher task. While Redis cannot be reached, a message is
  delivered to this worker's own desks only, and the relay reconnects.
- The log-in throttle: a source's misses are counted in Redis (a hash per
  source that expires `forget_s` after its last miss), so spreading guesses
  over the workers gains nothing. While Redis cannot be reached, this worker
  counts on its own.

CRM webhook retries stay with the worker that started them (see the README,
"Deploying at scale").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from voicebot.staff.feed import FeedHub
from voicebot.staff.throttle import LoginThrottle

log = logging.getLogger(__name__)
CHANNEL = "voicebot:desk"
THROTTLE_PREFIX = "voicebot:login:"
OUTBOX_LIMIT = 1024
RECONNECT_S = 1.0
Message = dict[str, Any]


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0,
                             health_check_interval=15)


class RedisFeed:
    """Relays a FeedHub through a Redis channel (`hub.relay` points here)."""

    def __init__(self, redis: aioredis.Redis, hub: FeedHub, channel: str = CHANNEL) -> None:
        self.redis = redis
        self.hub = hub
        self.channel = channel
        self._outbox: asyncio.Queue[Message] = asyncio.Queue(OUTBOX_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()  # set while the relay listens (tests, health)

    async def open(self) -> None:
        self.hub.relay = self.publish
        self._tasks = [asyncio.create_task(self._publish_loop(), name="desk-feed-publisher"),
                       asyncio.create_task(self._relay_loop(), name="desk-feed-relay")]

    async def close(self) -> None:
        self.hub.relay = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def publish(self, message: Message) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:  # Redis far behind: this worker's desks still get it
            log.warning("desk feed: outbox full, message delivered on this worker only")
            self.hub.deliver(message)

    async def _publish_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await self.redis.publish(self.channel, json.dumps(message, ensure_ascii=False))
            except (RedisError, OSError) as exc:
                log.warning("desk feed: Redis unavailable (%s): delivered on this worker only",
                            type(exc).__name__)
                self.hub.deliver(message)

    async def _relay_loop(self) -> None:
        while True:
            try:
                await self._relay()
            except (RedisError, OSError) as exc:
                log.warning("desk feed: relay lost Redis (%s); reconnecting", type(exc).__name__)
            finally:
                self.subscribed.clear()
            await asyncio.sleep(RECONNECT_S)

    async def _relay(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self.subscribed.set()
            async for item in pubsub.listen():
                if item.get("type") != "message":
                    continue
                try:
                    self.hub.deliver(json.loads(item["data"]))
                except (ValueError, TypeError):
                    log.warning("desk feed: unreadable message on %s skipped", self.channel)


class SharedThrottle:
    """`LoginThrottle`'s rule with the counts in Redis (wall-clock times, since
    the workers' monotonic clocks differ); `local` while Redis is unreachable."""

    def __init__(self, redis: aioredis.Redis, local: LoginThrottle | None = None) -> None:
        self.redis = redis
        self.local = local if local is not None else LoginThrottle()

    async def retry_after(self, source: str) -> float:
        try:
            misses, last = await self.redis.hmget(THROTTLE_PREFIX + source, "misses", "last")
        except (RedisError, OSError) as exc:
            log.warning("log-in throttle: Redis unavailable (%s): counting on this worker",
                        type(exc).__name__)
            return self.local.retry_after(source)
        if misses is None or last is None:
            return self.local.retry_after(source)
        wait = float(last) + self.local.wait_after(int(misses)) - time.time()
        return max(0.0, wait, self.local.retry_after(source))

    async def failed(self, source: str) -> None:
        key = THROTTLE_PREFIX + source
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "misses", 1)
                pipe.hset(key, "last", repr(time.time()))
                pipe.expire(key, max(1, int(self.local.forget_s)))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("log-in throttle: Redis unavailable (%s): counting on this worker",
                        type(exc).__name__)
            self.local.failed(source)
