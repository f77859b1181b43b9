"""Twilio's HTTP webhooks: the incoming-call TwiML and the <Connect action>."""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from voicebot.config import Settings
from voicebot.errors import StoreUnavailable
from voicebot.storage.base import CallStore
from voicebot.telephony.signature import valid_twilio_signature

log = logging.getLogger(__name__)

_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_twiml(settings: Settings, caller: str, request_base: str = "") -> str:
    """`request_base` (scheme://host of the webhook request) is used only when
    VOICEBOT_PUBLIC_URL is unset, e.g. while trying voicebot out locally."""
    base = (settings.public_url or request_base).rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    action = quoteattr(base + "/twilio/stream-ended")
    stream = quoteattr(ws_base + "/twilio/media")
    return (
        f"{_XML}<Response><Connect action={action}><Stream url={stream}>"
        f'<Parameter name="caller" value={quoteattr(caller)}/>'
        "</Stream></Connect></Response>"
    )


def dial_twiml(target: str) -> str:
    noun = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip:") else escape(target)
    return f"{_XML}<Response><Dial>{noun}</Dial></Response>"


HANGUP_TWIML = f"{_XML}<Response><Hangup/></Response>"


class TwimlHandlers:
    def __init__(self, settings: Settings, store: CallStore | None = None) -> None:
        self.settings = settings
        self.store = store

    async def _form(self, request: web.Request) -> dict[str, str]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        token = self.settings.twilio_auth_token
        if token:
            url = self.settings.public_url.rstrip("/") + request.path_qs
            if not valid_twilio_signature(token, request.headers.get("X-Twilio-Signature"), url, form):
                raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
        return form

    async def voice(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        request_base = f"{request.scheme}://{request.host}"
        return _xml(connect_twiml(self.settings, form.get("From", ""), request_base))

    async def stream_ended(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        call_sid = form.get("CallSid", "")
        try:
            record = await self.store.get(call_sid) if self.store and call_sid else None
        except StoreUnavailable:  # the database is down: fail safe, to a human
            record = None
        if record is not None and record.outcome == "completed":
            return _xml(HANGUP_TWIML)
        if record is None:
            log.warning("stream ended for an unknown call; sending it to a human")
        return _xml(dial_twiml(record.handoff_target if record and record.handoff_target
                               else self.settings.human_line))


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")
