"""The way out to Asterisk over AudioSocket: bot audio paced in 20 ms frames.

Asterisk writes every audio frame it receives straight to the caller's
channel, with no buffer of its own, so we must send at real time: one
320-byte frame every 20 ms on our own monotonic clock. AudioSocket has no
marks either, so the channel confirms playout itself: a mark is "echoed"
once every frame queued before it has been sent and its 20 ms have passed.
A `clear` (barge-in) drops what is still queued; the frame being played when
the caller interrupted is the last one they hear.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from voicebot.telephony.audiosocket_codec import FRAME_BYTES, LINE_RATE, audio_frame, hangup_frame

log = logging.getLogger(__name__)

FRAME_S = FRAME_BYTES / 2 / LINE_RATE
MAX_LAG_S = 0.2  # behind the clock by more than this (a stalled loop): restart it, don't burst


class FrameWriter:
    """Writes frames to one socket; a peer that stops reading for `timeout_s`
    (half-open TCP, a hung gateway) or a broken connection aborts the socket."""

    def __init__(self, writer: asyncio.StreamWriter, timeout_s: float, label: str) -> None:
        self._writer = writer
        self._timeout_s = timeout_s
        self.label = label
        self.closed = False
        writer.transport.set_write_buffer_limits(high=FRAME_BYTES * 50)  # 1 s of audio

    async def send(self, frame: bytes) -> bool:
        if self.closed:
            return False
        try:
            self._writer.write(frame)
            await asyncio.wait_for(self._writer.drain(), self._timeout_s)
            return True
        except TimeoutError:
            log.warning("audiosocket %s: the peer has not read for %g s (half-open TCP?): closing",
                        self.label, self._timeout_s)
        except (ConnectionError, RuntimeError) as exc:
            log.info("audiosocket %s: connection lost while sending (%s)", self.label,
                     type(exc).__name__)
        self.abort()
        return False

    async def hang_up(self) -> None:
        """Send the hangup frame (AudioSocket() then returns to the dialplan) and close."""
        if await self.send(hangup_frame()):
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), self._timeout_s)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._writer.transport.abort()

    def abort(self) -> None:
        self.closed = True
        self._writer.transport.abort()


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class AudioSocketChannel:
    """`MediaChannel` for AudioSocket. `run()` is the playout loop; the owner
    starts it as a task and cancels it when the call ends."""

    line_rate = LINE_RATE
    confirmed_by = "playout"  # the record says our clock, not the gateway, confirmed the prompt

    def __init__(self, send: Callable[[bytes], Awaitable[bool]], hang_up: Callable[[], Awaitable[None]],
                 *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._send = send
        self._hang_up = hang_up
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
        return None  # AudioSocket carries audio only; the record and GET /v1/calls carry the rest

    async def end(self, reason: str) -> None:
        await self._hang_up()

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
            if not await self._send(audio_frame(item)):
                self._queue.clear()
                return
            self.frames_played += 1
            due += FRAME_S
            await self._sleep(max(0.0, due - self._clock()))
