"""Where a gateway sends a call once the bot lets go of it, for gateways
without a channel of their own to carry that (Asterisk AudioSocket).

- `GET /v1/calls/{call_id}`: JSON `{call_id, outcome, handoff_reason,
  handoff_target, language, dial}` (no caller, no transcript).
- `GET /v1/calls/{call_id}/dial`: text/plain, what the dialplan's CURL() reads:
  the dial target for any call the bot did not complete (handed off, or lost
  its stream while the caller may still be there), or `hangup` for a call the
  bot completed. An unknown call answers 404 with an empty body, and the
  dialplan falls back to its own human queue: a failure here still ends
  with a person.

Both need the stream token (`Authorization: Bearer`) when one is set.
"""

from __future__ import annotations

from aiohttp import web

from voicebot.auth import bearer_matches
from voicebot.config import Settings
from voicebot.storage.base import CallRecord
from voicebot.telephony.human_line import HumanLine

HANG_UP = "hangup"


def dial_target(record: CallRecord, default: str) -> str:
    if record.outcome == "completed":
        return HANG_UP
    return record.handoff_target or default


class CallRouteHandler:
    def __init__(self, settings: Settings, line: HumanLine) -> None:
        self.settings = settings
        self.line = line

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/calls/{call_id}", self.call)
        router.add_get("/v1/calls/{call_id}/dial", self.dial)

    async def _record(self, request: web.Request) -> CallRecord:
        token = self.settings.stream_token
        if token and not bearer_matches(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token",
                                       headers={"WWW-Authenticate": "Bearer"})
        record = await self.line.record(request.match_info["call_id"])
        if record is None:
            raise web.HTTPNotFound(text="")
        return record

    async def call(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        return web.json_response({
            "call_id": record.call_id, "outcome": record.outcome or None,
            "handoff_reason": record.handoff_reason or None,
            "handoff_target": record.handoff_target or None, "language": record.language,
            "dial": dial_target(record, self.settings.human_line),
        })

    async def dial(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        return web.Response(text=dial_target(record, self.settings.human_line))
