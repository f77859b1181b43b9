"""Helpers for the staff desk tests: users with tokens made through the real
admin API, calls seeded through the real call store and event bus."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voicebot.app import DESK, REGISTRY
from voicebot.events import HandoffDecided
from voicebot.storage.base import CallRecord
from voicebot.types import HandoffReason, Source, Utterance, Word

from .conftest import ROOT, STAFF_TOKEN

KNOWLEDGE = str(ROOT / "knowledge")
PASSWORD = "correct horse battery"


@dataclass
class Client:
    """A staff member's view of the API: bearer token, or cookies after log-in."""

    base: str
    token: str | None = None
    cookies: aiohttp.CookieJar = field(default_factory=lambda: aiohttp.CookieJar(unsafe=True))

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with aiohttp.ClientSession(cookie_jar=self.cookies) as http:
            async with http.request(method, self.base + path, json=body, headers=headers) as r:
                if r.content_type == "application/json":
                    data = await r.json()
                else:
                    data = await r.read() if r.content_type.startswith("audio/") else await r.text()
                return r.status, data

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body if body is not None else {})


async def make_staff(base: str) -> dict[str, Client]:
    """ann and bob (agents), sue (supervisor), ada (admin), each with an API token."""
    admin = Client(base, STAFF_TOKEN)
    clients = {}
    for name, role in (("ann", "agent"), ("bob", "agent"), ("sue", "supervisor"), ("ada", "admin")):
        status, _ = await admin.post("/api/staff/users", {"name": name, "role": role,
                                                          "password": PASSWORD})
        assert status == 201
        status, made = await admin.post(f"/api/staff/users/{name}/tokens", {"label": "tests"})
        assert status == 201
        clients[name] = Client(base, made["token"])
    return clients


def utterance(text: str, conf: float, start: float, intent: str | None = None,
              source: Source = Source.SPEECH) -> Utterance:
    words = tuple(Word(w, conf if i else max(0.0, conf - 0.5), start + i * 0.3, start + i * 0.3 + 0.25)
                  for i, w in enumerate(text.split())) if source is Source.SPEECH else ()
    return Utterance(text, conf, start, start + 1.5, source, intent, words)


async def seed_call(server: Any, call_id: str, transcript: list[Utterance],
                    reason: HandoffReason | None = HandoffReason.CALLER_REQUEST,
                    caller: str = "+15550123", language: str = "en") -> None:
    """A call as the session leaves it: record, utterances, then (if handed off)
    the handoff decision on the bus and the outcome."""
    services = server.app[REGISTRY].services
    store = services.store
    record = CallRecord(call_id, "native", caller=caller, language=language,
                        started_at=time.time(), disclosure_text="I'm a computer.",
                        disclosure_started_at=time.time(), disclosure_played_at=time.time(),
                        disclosure_confirmed_by="mark")
    await store.create(record)
    for u in transcript:
        await store.add_utterance(call_id, time.time(), u)
    if reason is None:
        await store.update(call_id, outcome="completed", ended_at=time.time())
        await server.stored()  # the desk's lists read the database itself
        return
    services.events.publish(HandoffDecided(call_id, reason, "Caller asked for a person.",
                                           caller, language, tuple(transcript)))
    await store.update(call_id, outcome="handoff", handoff_reason=str(reason),
                       summary="Caller asked for a person.", ended_at=time.time())
    await server.stored()
    desk = server.app[DESK]
    for _ in range(100):
        if await desk.desk.transfer(call_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("transfer was not stored")
