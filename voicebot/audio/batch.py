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

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from voicebot.audio.codecs import ULAW_TO_PCM
from voicebot.audio.vad import (
    Endpointer,
    VadConfig,
    VadEvent,
    VoiceGate,
    frame_powers,
    run_frames,
)

log = logging.getLogger(__name__)

ENCODINGS = {"mulaw": 1, "pcm16": 2}  # bytes per sample
Deliver = Callable[[list[VadEvent]], None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


# `loop.call_later` in the server: the batcher itself stays free of asyncio.
Schedule = Callable[[float, Callable[[], None]], Cancellable]
Decode = Callable[[bytes, str], np.ndarray]  # line bytes, encoding -> int16 samples
Measure = Callable[[np.ndarray], list[float]]  # frames (rows) -> sums of squares


def decode_line(raw: bytes, encoding: str) -> np.ndarray:
    """All queued frames of one encoding in one table lookup (μ-law) or view (PCM16)."""
    if encoding == "mulaw":
        return ULAW_TO_PCM.take(np.frombuffer(raw, np.uint8))
    return np.frombuffer(raw, "<i2")


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

    @property
    def endpointer(self) -> Endpointer:
        return self._endpointer

    def push(self, data: bytes) -> None:
        """Queue line audio (any length); events follow within one tick."""
        if self.closed or not data:
            return
        queued = self._queued
        queued.append(data)
        batcher = self._batcher
        if len(queued) == 1:
            batcher._pending.append(self)
        batcher._frames += len(data) // self.frame_bytes + 1
        if batcher._frames >= batcher.max_frames:
            batcher.flush()
        elif batcher._schedule is not None:
            backlog = len(queued) > 1 or len(data) > self.frame_bytes
            if backlog or batcher._timer is None:
                batcher._wake(backlog)

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
        queued = self._queued
        data = queued[0] if len(queued) == 1 and not self._carry else self._carry + b"".join(queued)
        queued.clear()
        whole = len(data) - len(data) % self.frame_bytes
        if whole == len(data):
            self._carry = b""
            return data
        self._carry = data[whole:]
        return data[:whole]


class FrameBatcher:
    """Shared by all calls of a process; lives on the event loop's thread."""

    def __init__(self, schedule: Schedule | None, tick_s: float = 0.02, max_frames: int = 256,
                 decode: Decode | None = None, measure: Measure | None = None) -> None:
        """`decode`/`measure` replace the numpy steps (benchmarks compare audioop's)."""
        self.decode = decode or decode_line
        self.measure = measure or frame_powers
        self.tick_s = tick_s
        self.max_frames = max_frames
        self._schedule = schedule  # None: the owner calls flush() (benchmarks, tests)
        self._pending: list[Lane] = []
        self._frames = 0
        self._timer: Cancellable | None = None
        self._soon = False

    def lane(self, rate: int, encoding: str, config: VadConfig, deliver: Deliver) -> Lane:
        return Lane(self, rate, encoding, config, deliver)

    def flush(self) -> None:
        """Run every queued frame of every lane now."""
        self.close()
        lanes, self._pending, self._frames = self._pending, [], 0
        groups: dict[tuple[int, str], list[Lane]] = {}
        for lane in lanes:
            if not lane.closed:
                groups.setdefault(lane.key, []).append(lane)
        for group in groups.values():
            self._run_group(group)

    def close(self) -> None:
        """Cancel the scheduled flush (at shutdown, or because one is running now)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._soon = False

    def _wake(self, backlog: bool) -> None:
        """Flush at the next tick, or on the loop's next turn once a call has a
        backlog (audio arriving faster than real time is late already: holding
        it would only add delay, and it is a batch by itself)."""
        assert self._schedule is not None
        if not backlog:
            self._timer = self._schedule(self.tick_s, self.flush)
        elif not self._soon:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._soon = self._schedule(0.0, self.flush), True

    def _run_group(self, lanes: list[Lane]) -> None:
        encoding = lanes[0].key[1]
        frame_bytes = lanes[0].frame_bytes
        chunks = []
        one_each = True
        for lane in lanes:
            queued = lane._queued
            if len(queued) == 1 and not lane._carry and len(queued[0]) == frame_bytes:
                chunks.append(queued[0])  # the usual case: one whole 20 ms message
                queued.clear()
            else:
                chunks.append(lane._take())
                one_each = False
        raw = b"".join(chunks)
        if not raw:
            return
        frames = self.decode(raw, encoding).reshape(-1, frame_bytes // ENCODINGS[encoding])
        powers = self.measure(frames)
        if one_each:  # one frame per call: no slicing, no counting
            for lane, frame, power in zip(lanes, frames, powers, strict=True):
                try:
                    events = lane._endpointer.push(frame, lane._gate.voiced(power, frame))
                    if events:
                        lane._deliver(events)
                except Exception:  # one call's failure must not stall every other call's audio
                    log.exception("frame batcher: a call's audio handler failed")
            return
        row = 0
        for lane, chunk in zip(lanes, chunks, strict=True):
            n = len(chunk) // frame_bytes
            try:
                events = run_frames(lane._gate, lane._endpointer, frames[row:row + n], powers[row:row + n])
                if events:
                    lane._deliver(events)
            except Exception:  # one call's failure must not stall every other call's audio
                log.exception("frame batcher: a call's audio handler failed")
            row += n
