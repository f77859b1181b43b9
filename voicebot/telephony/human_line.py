"""After the handoff: the gateway tells us how its call to the human line went.

Twilio reports it through the <Dial action> (`twiml.py`); any other gateway
posts `POST /v1/calls/{call_id}/human-line` (JSON, the stream token). Both
land here: the desk learns of it (a caller left waiting gets a call back,
one who hung up has abandoned), and the gateway learns what to tell a caller
who is still on the line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from aiohttp import web

from voicebot.auth import bearer_matches
from voicebot.config import Settings
from voicebot.dialog.lang import PACKS
from voicebot.errors import StoreUnavailable
from voicebot.events import CallEventBus, HumanLineEnded
from voicebot.storage.base import CallRecord, CallStore
from voicebot.telephony.ids import RULE, safe_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HumanLineReply:
    say: str  # what to tell the caller before hanging up; "" when no one is waiting
    language: str
    callback: bool  # the caller was promised a call back
    call_known: bool


class HumanLine:
    def __init__(self, settings: Settings, store: CallStore | None, events: CallEventBus | None) -> None:
        self.settings = settings
        self.store = store
        self.events = events

    async def record(self, call_or_gateway_id: str) -> CallRecord | None:
        try:
            return await self.store.get(call_or_gateway_id) if self.store and call_or_gateway_id else None
        except StoreUnavailable:  # the database is down: the caller still hears something
            return None

    async def ended(self, call_or_gateway_id: str, connected: bool, caller_waiting: bool,
                    status: str) -> HumanLineReply:
        record = await self.record(call_or_gateway_id)
        if self.events is not None and record is not None:
            self.events.publish(HumanLineEnded(record.call_id, connected, caller_waiting, status))
        pack = PACKS.get(record.language if record else self.settings.language) or PACKS["en"]
        if connected or not caller_waiting:
            return HumanLineReply("", pack.code, False, record is not None)
        log.warning("the human line did not take a call (%s); the caller is told", status or "no status")
        callback = record is not None and dialable(record.caller)
        text = pack.prompts["human_unavailable" if callback else "human_unavailable_no_number"]
        return HumanLineReply(text, pack.code, callback, record is not None)


def dialable(number: str) -> bool:
    """A number someone can call back (not withheld, "anonymous", or empty)."""
    digits = number.removeprefix("+")
    return digits.isdigit() and len(digits) >= 3


class HumanLineHandler:
    """`POST /v1/calls/{call_id}/human-line` for gateways other than Twilio:
    `{"connected": bool, "caller_waiting": bool, "status": str}` in,
    `{"say", "language", "callback", "call_known"}` out."""

    def __init__(self, settings: Settings, line: HumanLine) -> None:
        self.settings = settings
        self.line = line

    async def handle(self, request: web.Request) -> web.Response:
        token = self.settings.stream_token
        if token and not bearer_matches(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token",
                                       headers={"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(
                text=json.dumps({"error": "send the body as Content-Type: application/json"}),
                content_type="application/json")
        if not safe_id(request.match_info["call_id"]):
            raise _bad(f"call_id must be {RULE}")
        try:
            body = json.loads(await request.text())
        except RecursionError:
            raise _bad("the body is nested too deeply") from None
        except ValueError as exc:  # also UnicodeDecodeError, and integers of over 4300 digits
            raise _bad(f"the body must be JSON: {str(exc)[:80]}") from None
        if not isinstance(body, dict):
            raise _bad("the body must be a JSON object")
        connected, waiting = body.get("connected"), body.get("caller_waiting")
        status = body.get("status", "")
        if not isinstance(connected, bool) or not isinstance(waiting, bool):
            raise _bad("connected and caller_waiting must be true or false")
        if not isinstance(status, str) or len(status) > 64:
            raise _bad("status must be a short string")
        reply = await self.line.ended(request.match_info["call_id"], connected, waiting, status)
        return web.json_response(asdict(reply))


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}), content_type="application/json")
