"""Twilio's HTTP webhooks: the incoming-call TwiML, the <Connect action> (the bot
is done: hang up or dial the human line) and the <Dial action> (the human line
is done: if no one answered, tell the caller and queue a call back)."""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from voicebot.config import Settings
from voicebot.events import CallEventBus
from voicebot.signing import valid_twilio_signature
from voicebot.storage.base import CallStore
from voicebot.telephony.human_line import HumanLine
from voicebot.telephony.stream_token import PARAMETER, StreamTokens
from voicebot.telephony.twilio_params import check_parameters

log = logging.getLogger(__name__)

_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_twiml(settings: Settings, caller: str, request_base: str = "",
                  token: str = "") -> str:
    """`request_base` (scheme://host of the webhook request) is used only when
    VOICEBOT_PUBLIC_URL is unset, e.g. while trying voicebot out locally.
    `token` is the call's media-stream token (`stream_token.py`)."""
    base = (settings.public_url or request_base).rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    action = quoteattr(base + "/twilio/stream-ended")
    stream = quoteattr(ws_base + "/twilio/media")
    return (
        f"{_XML}<Response><Connect action={action}><Stream url={stream}>"
        f'<Parameter name="caller" value={quoteattr(caller)}/>'
        + (f'<Parameter name="{PARAMETER}" value={quoteattr(token)}/>' if token else "")
        + "</Stream></Connect></Response>"
    )


def dial_twiml(target: str, action: str = "") -> str:
    noun = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip:") else escape(target)
    attrs = f" action={quoteattr(action)}" if action else ""
    return f"{_XML}<Response><Dial{attrs}>{noun}</Dial></Response>"


HANGUP_TWIML = f"{_XML}<Response><Hangup/></Response>"
_SAY_LANGUAGE = {"en": "en-US", "ko": "ko-KR"}
CONNECTED = ("completed", "answered")  # DialCallStatus when a person took the call


def say_and_hang_up(text: str, language: str) -> str:
    say_language = quoteattr(_SAY_LANGUAGE.get(language, "en-US"))
    return f"{_XML}<Response><Say language={say_language}>{escape(text)}</Say><Hangup/></Response>"


class TwimlHandlers:
    def __init__(self, settings: Settings, store: CallStore | None = None,
                 events: CallEventBus | None = None) -> None:
        self.settings = settings
        self.line = HumanLine(settings, store, events)
        auth_token = settings.twilio_auth_token
        self.tokens = StreamTokens(auth_token) if auth_token else None

    async def _form(self, request: web.Request, required: tuple[str, ...]) -> dict[str, str]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        token = self.settings.twilio_auth_token
        if token:
            url = self.settings.public_url.rstrip("/") + request.path_qs
            if not valid_twilio_signature(token, request.headers.get("X-Twilio-Signature"), url, form):
                raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
        problem = check_parameters(form, required)
        if problem:
            log.warning("refused a Twilio request to %s: %s", request.path, problem)
            raise web.HTTPBadRequest(text=problem)
        return form

    async def voice(self, request: web.Request) -> web.Response:
        form = await self._form(request, ("CallSid", "From"))
        request_base = f"{request.scheme}://{request.host}"
        token = self.tokens.issue(form["CallSid"], form["From"]) if self.tokens else ""
        return _xml(connect_twiml(self.settings, form["From"], request_base, token))

    def _url(self, request: web.Request, path: str) -> str:
        return (self.settings.public_url or f"{request.scheme}://{request.host}").rstrip("/") + path

    async def stream_ended(self, request: web.Request) -> web.Response:
        form = await self._form(request, ("CallSid",))
        record = await self.line.record(form["CallSid"])
        if record is not None and record.outcome == "completed":
            return _xml(HANGUP_TWIML)
        if record is None:
            log.warning("stream ended for an unknown call; sending it to a human")
        target = record.handoff_target if record and record.handoff_target else self.settings.human_line
        return _xml(dial_twiml(target, self._url(request, "/twilio/dial-ended")))

    async def dial_ended(self, request: web.Request) -> web.Response:
        """Twilio's <Dial action>: the human line's call is over, one way or another."""
        form = await self._form(request, ("CallSid", "CallStatus", "DialCallStatus"))
        status = form["DialCallStatus"]
        reply = await self.line.ended(
            form["CallSid"], connected=status in CONNECTED,
            caller_waiting=form["CallStatus"] == "in-progress", status=status)
        return _xml(say_and_hang_up(reply.say, reply.language) if reply.say else HANGUP_TWIML)


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")
