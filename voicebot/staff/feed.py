"""The live desk feed: Server-Sent Events to every open desk.

`publish` never blocks: each desk has a bounded queue, and a desk too slow to
drain it is disconnected (its browser reconnects and reloads the queue)
rather than holding up the others. With several workers, `relay` (set by
`voicebot.staff.shared.RedisFeed`) takes each message to every worker, whose
relay `deliver`s it to the desks connected there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

HEARTBEAT_S = 15.0
QUEUE_LIMIT = 256
_CLOSE = None


class FeedHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._closed = False
        self.relay: Callable[[dict[str, Any]], None] | None = None

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, message: dict[str, Any]) -> None:
        if self.relay is not None:
            self.relay(message)
        else:
            self.deliver(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """To the desks connected to this worker."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(queue)

    def close(self) -> None:
        """Ends every open stream (server shutdown)."""
        self._closed = True
        for queue in list(self._queues):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(_CLOSE)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        if self._closed:
            return response
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        try:
            await response.write(b"retry: 2000\nevent: ready\ndata: {}\n\n")
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if message is _CLOSE:
                    break
                await response.write(sse_frame(message))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the desk went away
        finally:
            self._queues.discard(queue)
        return response


def sse_frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, ensure_ascii=False)
    return f"event: {message['type']}\ndata: {data}\n\n".encode()
