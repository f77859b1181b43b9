"""`WS /twilio/media`: Twilio Media Streams (bidirectional) ↔ a call session."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from voicebot.audio.codecs import ulaw_encode
from voicebot.call.registry import CallRegistry, segment_labels
from voicebot.call.session import CallSession
from voicebot.config import Settings
from voicebot.errors import ProtocolError
from voicebot.signing import valid_twilio_signature
from voicebot.storage.base import CallRecord
from voicebot.telephony import twilio_codec as tc
from voicebot.telephony.stream_token import PARAMETER, StreamTokens
from voicebot.telephony.ws_common import (
    close_with_error,
    finish_call,
    id_in_use,
    messages,
    open_socket,
    start_call,
)


class TwilioChannel:
    line_rate = 8000

    def __init__(self, ws: web.WebSocketResponse, stream_sid: str) -> None:
        self._ws = ws
        self._sid = stream_sid

    async def send_audio(self, samples: np.ndarray) -> None:
        if not self._ws.closed:
            await self._ws.send_str(tc.media_message(self._sid, ulaw_encode(samples)))

    async def send_mark(self, name: str) -> None:
        if not self._ws.closed:
            await self._ws.send_str(tc.mark_message(self._sid, name))

    async def send_clear(self) -> None:
        if not self._ws.closed:
            await self._ws.send_str(tc.clear_message(self._sid))

    async def send_event(self, event: dict[str, Any]) -> None:
        return None  # Twilio has no channel for these; the record and TwiML carry them

    async def end(self, reason: str) -> None:
        # Closing the stream makes Twilio fetch <Connect action>, which dials the human.
        await self._ws.close(code=1000, message=reason.encode())


class TwilioMediaHandler:
    def __init__(self, settings: Settings, registry: CallRegistry) -> None:
        self.settings = settings
        self.registry = registry
        auth_token = settings.twilio_auth_token
        self.tokens = StreamTokens(auth_token) if auth_token else None

    def _authorised(self, request: web.Request) -> bool:
        token = self.settings.twilio_auth_token
        if not token:
            return True
        url = self.settings.ws_public_base + request.path_qs
        return valid_twilio_signature(token, request.headers.get("X-Twilio-Signature"), url)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
        s = self.settings
        ws, ready = await open_socket(request, self.registry, s.max_message_bytes)
        if not ready:
            return ws
        session: CallSession | None = None
        task: asyncio.Task[None] | None = None
        try:
            async for msg in messages(ws, s.max_message_bytes, s.idle_timeout_s,
                                       lambda: session is not None):  # noqa: B023 - the current call
                if msg.type is not WSMsgType.TEXT:
                    raise ProtocolError("Twilio messages must be JSON text frames", 1003)
                message = tc.parse(msg.data)
                if session is None:
                    session = await self._begin(message, ws)
                    if session is not None:
                        task = start_call(self.registry, session)
                    continue
                if self._dispatch(message, session):
                    # stop: the call is over; later messages are not read (docs/protocol.md)
                    await finish_call(self.registry, session, task)
                    await ws.close(code=1000, message=b"stopped")
                    break
        except ProtocolError as error:
            await finish_call(self.registry, session, task)  # record stored before the close
            await close_with_error(ws, error, self.registry)
        finally:
            await finish_call(self.registry, session, task)
        return ws

    async def _begin(self, message: tc.TwilioMessage,
                     ws: web.WebSocketResponse) -> CallSession | None:
        if isinstance(message, tc.Connected):
            return None
        if not isinstance(message, tc.Start):
            raise ProtocolError(f"{type(message).__name__.lower()} before start")
        params = message.custom_parameters
        caller = params.get("caller", "")
        if self.tokens is not None:
            self.tokens.redeem(params.get(PARAMETER), message.call_sid, caller)
        if await id_in_use(self.registry, message.call_sid):
            # would append to, or hide behind, another call's record
            raise ProtocolError("start: this callSid was already used")
        record = CallRecord(
            call_id="", gateway="twilio", gateway_call_id=message.call_sid,
            stream_id=message.stream_sid, caller=caller,
            language=params.get("language", "")[:16],
        )
        session = self.registry.new_session(record, TwilioChannel(ws, message.stream_sid))
        self.registry.label(session.recorder.call_id, segment_labels(params))
        return session

    def _dispatch(self, message: tc.TwilioMessage, session: CallSession) -> bool:
        """Hand one message to the session; True when the stream is over."""
        if isinstance(message, tc.Media):
            if message.track in ("inbound", "inbound_track"):
                session.on_media(message.payload, "mulaw")
        elif isinstance(message, tc.Dtmf):
            session.on_dtmf(message.digit)
        elif isinstance(message, tc.Mark):
            session.on_mark(message.name)
        elif isinstance(message, tc.Stop):
            return True
        elif isinstance(message, tc.Start):
            raise ProtocolError("duplicate start")
        return False
