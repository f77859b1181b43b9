"""The VAD front end of all live calls, run together once per tick.

A 20 ms telephone frame is 160 samples: numpy's fixed cost per call (a few
µs) is larger than the work itself, so decoding and measuring each call's
frames on their own costs more than doing the same for every call at once.
Each call gets a `Lane`; the adapters push the line bytes as they arrive and
the batcher, at most `tick_s` later (or at once when `max_frames` are
queued), decodes all queued frames of one format with one table lookup,
measures their levels with one reduction, and then runs each call's own gate
(webrtcvad) and endpointer over its frames in order. Decisions are exactly
those of `SpeechDetector` on the same audio (the levels are computed in exact
integer arithmetic), only up to one tick later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from voicebot.audio.codecs import ULAW_TO_PCM
from voicebot.audio.vad import (
    Endpointer,
    VadConfig,
    VadEvent,
    VoiceGate,
    frame_levels,
    run_frames,
)

log = logging.getLogger(__name__)

ENCODINGS = {"mulaw": 1, "pcm16": 2}  # bytes per sample
Deliver = Callable[[list[VadEvent]], None]


class Lane:
    """One call's place in the batcher: its queued bytes, gate and endpointer."""

    def __init__(self, batcher: FrameBatcher, rate: int, encoding: str, config: VadConfig,
                 deliver: Deliver) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}")
        self.key = (rate, encoding)
        self.frame_bytes = rate * config.frame_ms // 1000 * ENCODINGS[encoding]
        self._batcher = batcher
        self._gate = VoiceGate(rate, config)
        self._endpointer = Endpointer(config)
        self._deliver = deliver
        self._queued: list[bytes] = []
        self._carry = b""
        self.closed = False

    @property
    def speaking(self) -> bool:
        return self._endpointer.speaking

    def push(self, data: bytes) -> None:
        """Queue line audio (any length); events follow within one tick."""
        if self.closed or not data:
            return
        self._queued.append(data)
        self._batcher._queued(self, len(data) // self.frame_bytes + 1)

    def drain(self) -> None:
        """Process everything queued now (before a DTMF digit or a hang-up, so
        events keep their order)."""
        if self._queued:
            self._batcher.flush()

    def end(self) -> list[VadEvent]:
        """Hang-up: process what is queued, close an utterance in progress, leave."""
        self.drain()
        self.close()
        return self._endpointer.flush()

    def close(self) -> None:
        """The call is over: drop what is queued and take nothing more."""
        self.closed = True
        self._queued.clear()

    def _take(self) -> bytes:
        """Queued whole frames; a partial frame waits for the next push."""
        data = self._carry + b"".join(self._queued)
        self._queued.clear()
        whole = len(data) - len(data) % self.frame_bytes
        self._carry = data[whole:]
        return data[:whole]

    def _run(self, frames: np.ndarray, levels: list[float]) -> None:
        events = run_frames(self._gate, self._endpointer, frames, levels)
        if events:
            self._deliver(events)


class FrameBatcher:
    """Shared by all calls of a process; lives on the event loop's thread."""

    def __init__(self, tick_s: float = 0.02, max_frames: int = 256, autoflush: bool = True) -> None:
        self.tick_s = tick_s
        self.max_frames = max_frames
        self._autoflush = autoflush  # False: the owner calls flush() (benchmarks, tests)
        self._pending: dict[Lane, None] = {}
        self._frames = 0
        self._timer: asyncio.TimerHandle | None = None

    def lane(self, rate: int, encoding: str, config: VadConfig, deliver: Deliver) -> Lane:
        return Lane(self, rate, encoding, config, deliver)

    def flush(self) -> None:
        """Run every queued frame of every lane now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lanes, self._pending, self._frames = list(self._pending), {}, 0
        groups: dict[tuple[int, str], list[Lane]] = {}
        for lane in lanes:
            if not lane.closed:
                groups.setdefault(lane.key, []).append(lane)
        for group in groups.values():
            self._run_group(group)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()

    def _queued(self, lane: Lane, frames: int) -> None:
        self._pending[lane] = None
        self._frames += frames
        if self._frames >= self.max_frames:
            self.flush()
        elif self._timer is None and self._autoflush:
            self._timer = asyncio.get_running_loop().call_later(self.tick_s, self.flush)

    def _run_group(self, lanes: list[Lane]) -> None:
        chunks = [lane._take() for lane in lanes]
        rate, encoding = lanes[0].key
        frame_len = lanes[0].frame_bytes // ENCODINGS[encoding]
        raw = b"".join(chunks)
        if not raw:
            return
        if encoding == "mulaw":
            samples = ULAW_TO_PCM.take(np.frombuffer(raw, np.uint8))
        else:
            samples = np.frombuffer(raw, "<i2")
        frames = samples.reshape(-1, frame_len)
        levels = frame_levels(frames)
        row = 0
        for lane, chunk in zip(lanes, chunks, strict=True):
            n = len(chunk) // lane.frame_bytes
            if n:
                try:
                    lane._run(frames[row:row + n], levels[row:row + n])
                except Exception:  # one call's failure must not stall every other call's audio
                    log.exception("frame batcher: a call's audio handler failed")
            row += n
