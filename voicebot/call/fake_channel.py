"""A MediaChannel for tests: records what the call sent, and when.

    channel = FakeChannel(marks="echo")   # every mark is echoed once sent (a gateway that plays instantly)
    channel = FakeChannel(marks="keep")   # marks wait for the test: channel.echo(name)
    await channel.wait_for("end")          # the next entry of that kind (bounded by `timeout`)

`sent` lists (time.monotonic(), kind, detail) for every call the session made:
kinds "audio" (detail: samples), "mark" (name), "clear", "event" (the dict), "end"
(reason), so a test can measure how long after a cause its effect came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Sent = tuple[float, str, Any]


class FakeChannel:
    def __init__(self, line_rate: int = 8000, *, marks: str = "echo",
                 fail_audio: BaseException | None = None) -> None:
        if marks not in ("echo", "keep"):
            raise ValueError("marks is 'echo' or 'keep'")
        self.line_rate = line_rate
        self.marks = marks
        self.fail_audio = fail_audio
        self.sent: list[Sent] = []
        self.on_mark: Callable[[str], None] | None = None  # the session's, for "echo"
        self._changed = asyncio.Event()

    async def send_audio(self, samples: np.ndarray) -> None:
        if self.fail_audio is not None:
            raise self.fail_audio
        self._add("audio", samples.size)

    async def send_mark(self, name: str) -> None:
        self._add("mark", name)
        if self.marks == "echo" and self.on_mark is not None:
            asyncio.get_running_loop().call_soon(self.on_mark, name)

    async def send_clear(self) -> None:
        self._add("clear", None)

    async def send_event(self, event: dict[str, Any]) -> None:
        self._add("event", event)

    async def end(self, reason: str) -> None:
        self._add("end", reason)

    def echo(self, name: str) -> None:
        """The gateway played everything up to mark `name`."""
        assert self.on_mark is not None, "no session attached"
        self.on_mark(name)

    # --- what the test reads -----------------------------------------------------------
    def of(self, kind: str) -> list[Any]:
        return [detail for _, k, detail in self.sent if k == kind]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON events named `name` ("prompt", "transcript", "handoff")."""
        return [e for e in self.of("event") if e.get("event") == name]

    def prompts(self) -> list[str]:
        return [e["name"] for e in self.events("prompt")]

    @property
    def end_reason(self) -> str | None:
        ends = self.of("end")
        return ends[0] if ends else None

    async def wait_for(self, kind: str, match: Callable[[Any], bool] = lambda _: True,
                       *, after: int = 0, timeout: float = 10.0) -> Sent:
        """The first entry from index `after` on of this kind whose detail matches;
        waits for it (at most `timeout` seconds) if it has not come yet."""
        async with asyncio.timeout(timeout):
            while True:
                for entry in self.sent[after:]:
                    if entry[1] == kind and match(entry[2]):
                        return entry
                self._changed.clear()
                await self._changed.wait()

    def _add(self, kind: str, detail: Any) -> None:
        self.sent.append((time.monotonic(), kind, detail))
        self._changed.set()
