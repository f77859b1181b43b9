"""Prompt playout: sends audio in 20 ms pieces, then a mark, then waits for the
gateway's echo (the real proof it played) or, if none comes, for the audio's
duration plus a grace period. A new prompt replaces the one playing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicebot.call.media import MediaChannel
from voicebot.dialog.messages import Say

CHUNK_MS = 20


@dataclass(frozen=True)
class Playout:
    say: Say
    started_at: float  # wall clock, first audio byte sent
    finished_at: float  # wall clock, mark echoed / timer ran out / interrupted
    confirmed_by: str  # "mark" | "playout" (the adapter's own clock) | "timer" | "interrupted"


AudioSource = Callable[[Say], Awaitable[np.ndarray]]
PlayoutHandler = Callable[[Playout], None]
FailureHandler = Callable[[Say, BaseException], None]
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None] | None"]


def _create_task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


class Player:
    def __init__(
        self, channel: MediaChannel, audio_for: AudioSource, grace_s: float,
        on_played: PlayoutHandler, on_failed: FailureHandler, spawn: Spawn = _create_task,
    ) -> None:
        """`spawn` starts the playout tasks (the call's own task group)."""
        self._channel = channel
        self._audio_for = audio_for
        self._grace_s = grace_s
        self._on_played = on_played
        self._on_failed = on_failed
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self._marks: dict[str, asyncio.Future[None]] = {}
        self._sent_unconfirmed = False

    def play(self, say: Say) -> None:
        """Start `say`; a prompt still playing is cut and its buffered audio cleared."""
        clear_first = self._sent_unconfirmed
        self._cancel_current()
        self._task = self._spawn(self._play(say, clear_first), f"prompt-{say.name}")

    async def stop(self) -> None:
        """Barge-in: cut the prompt and tell the gateway to drop what it buffered."""
        had_audio = self._sent_unconfirmed
        self._cancel_current()
        if had_audio:
            await self._channel.send_clear()

    def mark_echoed(self, name: str) -> None:
        future = self._marks.pop(name, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def close(self) -> None:
        task = self._task
        self._cancel_current()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _cancel_current(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self._sent_unconfirmed = False

    async def _play(self, say: Say, clear_first: bool) -> None:
        try:
            if clear_first:
                await self._channel.send_clear()
            samples = await self._audio_for(say)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # TTS failure of any kind must reach a human, not silence
            self._on_failed(say, exc)
            return
        started = time.time()
        self._sent_unconfirmed = True
        try:
            confirmed = await self._send_and_wait(say, samples)
        except asyncio.CancelledError:
            self._on_played(Playout(say, started, time.time(), "interrupted"))
            raise
        self._sent_unconfirmed = False
        self._on_played(Playout(say, started, time.time(), confirmed))

    async def _send_and_wait(self, say: Say, samples: np.ndarray) -> str:
        rate = self._channel.line_rate
        step = rate * CHUNK_MS // 1000
        for offset in range(0, samples.size, step):
            await self._channel.send_audio(samples[offset : offset + step])
        name = f"{say.prompt_id}-{say.name}"
        echoed = asyncio.get_running_loop().create_future()
        self._marks[name] = echoed
        await self._channel.send_mark(name)
        try:
            await asyncio.wait_for(echoed, samples.size / rate + self._grace_s)
            # "mark": the gateway echoed it; adapters that pace playout themselves say so
            return getattr(self._channel, "confirmed_by", "mark")
        except TimeoutError:
            return "timer"
        finally:
            self._marks.pop(name, None)
