"""Bot audio out at real time, for gateways with no playout buffer of their own
(Asterisk AudioSocket, RTP): one 320-byte PCM16 frame (20 ms at 8 kHz) every
20 ms on our own monotonic clock. Such gateways echo no marks either, so the
channel confirms playout itself: a mark counts as played once every frame
queued before it has been sent and its 20 ms have passed. A `clear`
(barge-in) drops what is still queued; the frame being played when the
caller interrupted is the last one they hear.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

LINE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16
FRAME_S = FRAME_BYTES / 2 / LINE_RATE
MAX_LAG_S = 0.2  # behind the clock by more than this (a stalled loop): restart it, don't burst

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class PacedChannel:
    """A `MediaChannel`. `send(pcm)` puts one frame on the wire (False: the
    connection is gone); `end(reason)` calls `finish(reason)`. `run()` is the
    playout loop: the owner runs it as a task and cancels it when the call ends."""

    line_rate = LINE_RATE
    confirmed_by = "playout"  # the record says our clock, not the gateway, confirmed the prompt

    def __init__(self, send: Callable[[bytes], Awaitable[bool]],
                 finish: Callable[[str], Awaitable[None]],
                 *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._send = send
        self._finish = finish
        self._clock = clock
        self._sleep = sleep
        self._queue: deque[bytes | str] = deque()  # 320-byte frames and mark names, in order
        self._wake = asyncio.Event()
        self.on_played: Callable[[str], None] = lambda name: None
        self.frames_played = 0
        self.frames_dropped = 0

    # --- MediaChannel ----------------------------------------------------------------
    async def send_audio(self, samples: np.ndarray) -> None:
        pcm = np.ascontiguousarray(samples, dtype="<i2").tobytes()
        for offset in range(0, len(pcm), FRAME_BYTES):
            self._queue.append(pcm[offset : offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        self._wake.set()

    async def send_mark(self, name: str) -> None:
        self._queue.append(name)
        self._wake.set()

    async def send_clear(self) -> None:
        self.frames_dropped += sum(isinstance(item, bytes) for item in self._queue)
        self._queue.clear()

    async def send_event(self, event: dict[str, Any]) -> None:
        return None  # audio only; the record (and GET /v1/calls) carry the rest

    async def end(self, reason: str) -> None:
        await self._finish(reason)

    # --- playout ---------------------------------------------------------------------
    async def run(self) -> None:
        due: float | None = None  # when the next frame is due; None: the line is idle
        while True:
            if not self._queue:
                due = None
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            if isinstance(item, str):
                self.on_played(item)  # everything queued before the mark has played
                continue
            now = self._clock()
            if due is None or now - due > MAX_LAG_S:
                due = now
            if not await self._send(item):
                self._queue.clear()
                return
            self.frames_played += 1
            due += FRAME_S
            await self._sleep(max(0.0, due - self._clock()))
