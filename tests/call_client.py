"""An interactive caller on the native protocol, for tests that answer the bot.

It streams 20 ms of silence per 20 ms (the call's clock and the idle watchdog
need audio), echoes every mark at once (each prompt counts as played when its
audio has arrived), and hands the bot's JSON events to the test, which waits
for them and answers with keys or audio.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np

FRAME = np.zeros(160, dtype="<i2").tobytes()  # 20 ms of 8 kHz PCM16 silence


class Caller:
    def __init__(self, url: str, call_id: str = "", language: str = "", caller: str = "+15550001111") -> None:
        self.url, self.call_id, self.language, self.number = url, call_id, language, caller
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._speech: asyncio.Queue[bytes] = asyncio.Queue()

    async def __aenter__(self) -> Caller:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(self.url + "/v1/stream")
        start = {"event": "start", "call_id": self.call_id, "caller": self.number, "sample_rate": 8000}
        if self.language:
            start["language"] = self.language
        await self.ws.send_str(json.dumps(start))
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._send_audio())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()
        await self._http.close()

    async def prompt(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return await self.event("prompt", timeout, name=name)

    async def event(self, kind: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        """The next event of `kind` (with the given fields); earlier others are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                    return event

    async def keys(self, digits: str) -> None:
        for digit in digits:
            await self.ws.send_str(json.dumps({"event": "dtmf", "digit": digit}))

    def say(self, pcm8k: np.ndarray) -> None:
        """Speak this audio (8 kHz PCM16) in place of the silence, 20 ms at a time."""
        data = pcm8k.astype("<i2").tobytes()
        for i in range(0, len(data), len(FRAME)):
            self._speech.put_nowait(data[i:i + len(FRAME)].ljust(len(FRAME), b"\0"))

    async def hang_up(self) -> None:
        await self.ws.send_str(json.dumps({"event": "stop"}))

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            self.seen.append(event)
            if event.get("event") == "mark":
                await self.ws.send_str(json.dumps({"event": "mark", "name": event["name"]}))
            await self.events.put(event)

    async def _send_audio(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self.ws.closed:
            frame = self._speech.get_nowait() if not self._speech.empty() else FRAME
            await self.ws.send_bytes(frame)
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))  # real-time pace, not a wait for an event
