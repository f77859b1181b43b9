"""`WS /v1/stream`: the native protocol (JSON events + binary PCM/μ-law frames).

See docs/protocol.md. The first message is a JSON `start`; then binary audio in
the announced format, JSON `dtmf`, `mark` (echo of ours) and `stop`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from voicebot.audio.codecs import ulaw_encode
from voicebot.auth import bearer_matches
from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallSession
from voicebot.config import Settings
from voicebot.errors import ProtocolError
from voicebot.storage.base import CallRecord
from voicebot.telephony.ids import RULE, safe_id
from voicebot.telephony.ws_common import (
    close_with_error,
    finish_call,
    id_in_use,
    messages,
    open_socket,
    start_call,
)

RATES = (8000, 16000)
ENCODINGS = ("pcm16", "mulaw")
UNSUPPORTED_DATA = 1003


@dataclass(frozen=True)
class StreamFormat:
    sample_rate: int
    encoding: str

    def check(self, data: bytes) -> bytes:
        if self.encoding == "pcm16" and len(data) % 2:
            raise ProtocolError("pcm16 audio frame has an odd number of bytes", UNSUPPORTED_DATA)
        return data

    def encode(self, samples: np.ndarray) -> bytes:
        if self.encoding == "mulaw":
            return ulaw_encode(samples)
        return np.ascontiguousarray(samples, dtype="<i2").tobytes()


class NativeChannel:
    def __init__(self, ws: web.WebSocketResponse, fmt: StreamFormat) -> None:
        self._ws = ws
        self._fmt = fmt
        self.line_rate = fmt.sample_rate

    async def send_audio(self, samples: np.ndarray) -> None:
        if not self._ws.closed:
            await self._ws.send_bytes(self._fmt.encode(samples))

    async def send_mark(self, name: str) -> None:
        await self.send_event({"event": "mark", "name": name})

    async def send_clear(self) -> None:
        await self.send_event({"event": "clear"})

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self._ws.closed:
            await self._ws.send_str(json.dumps(event, ensure_ascii=False))

    async def end(self, reason: str) -> None:
        await self.send_event({"event": "end", "reason": reason})
        await self._ws.close(code=1000, message=reason.encode())


def parse_event(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # ValueError: also integers of over 4300 digits
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ProtocolError('message must be a JSON object with a string "event"')
    return event


def parse_start(event: dict[str, Any]) -> tuple[CallRecord, StreamFormat]:
    if event["event"] != "start":
        raise ProtocolError(f"expected start, got {event['event'][:40]!r}")
    rate, encoding = event.get("sample_rate", 8000), event.get("encoding", "pcm16")
    if type(rate) is not int or rate not in RATES:  # 8000.0 and true are not rates
        raise ProtocolError(f"start: sample_rate must be one of {RATES}")
    if encoding not in ENCODINGS:
        raise ProtocolError(f"start: encoding must be one of {ENCODINGS}")
    call_id = event.get("call_id", "")
    if not isinstance(call_id, str) or (call_id and not safe_id(call_id)):
        raise ProtocolError(f"start: call_id must be {RULE} (or absent)")
    caller = event.get("caller", "")
    if not isinstance(caller, str) or len(caller) > 256:
        raise ProtocolError("start: caller must be a string")
    language = event.get("language", "")
    if not isinstance(language, str) or len(language) > 16:
        raise ProtocolError("start: language must be a language code such as \"en\"")
    record = CallRecord(call_id=call_id, gateway="native", caller=caller, language=language)
    return record, StreamFormat(rate, encoding)


def start_labels(msg: Any) -> dict[str, str]:
    """`"labels": {"plan": "gold"}` in `start`: caller-group labels for the reports.
    A start that is not JSON at all is left for `_begin` to refuse."""
    try:
        event = parse_event(msg.data) if msg.type is WSMsgType.TEXT else {}
    except ProtocolError:
        return {}
    labels = event.get("labels", {})
    if not isinstance(labels, dict) or len(labels) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ProtocolError("start: labels must be an object of at most 16 string values")
    return labels


class NativeStreamHandler:
    def __init__(self, settings: Settings, registry: CallRegistry) -> None:
        self.settings = settings
        self.registry = registry

    def _authorised(self, request: web.Request) -> bool:
        token = self.settings.stream_token
        if not token:
            return True
        return bearer_matches(request.headers.get("Authorization"), token)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token",
                                       headers={"WWW-Authenticate": "Bearer"})
        s = self.settings
        ws, ready = await open_socket(request, self.registry, s.max_message_bytes)
        if not ready:
            return ws
        session: CallSession | None = None
        task: asyncio.Task[None] | None = None
        fmt: StreamFormat | None = None
        try:
            async for msg in messages(ws, s.max_message_bytes, s.idle_timeout_s,
                                       lambda: session is not None):  # noqa: B023 - the current call
                if session is None:
                    labels = start_labels(msg)  # checked before the call starts
                    session, fmt = await self._begin(msg, ws)
                    self.registry.label(session.recorder.call_id, labels)
                    task = start_call(self.registry, session)
                    await ws.send_str(json.dumps({"event": "started",
                                                  "call_id": session.recorder.call_id}))
                    continue
                assert fmt is not None
                if self._dispatch(msg, session, fmt):
                    # stop: the call is over; later messages are not read (docs/protocol.md)
                    await finish_call(self.registry, session, task)
                    await ws.close(code=1000, message=b"stopped")
                    break
        except ProtocolError as error:
            await _send_error(ws, error)
            await finish_call(self.registry, session, task)  # record stored before the close
            await close_with_error(ws, error, self.registry)
        finally:
            await finish_call(self.registry, session, task)
        return ws

    async def _begin(self, msg: Any, ws: web.WebSocketResponse) -> tuple[CallSession, StreamFormat]:
        if msg.type is not WSMsgType.TEXT:
            raise ProtocolError("the first message must be a JSON start event", UNSUPPORTED_DATA)
        record, fmt = parse_start(parse_event(msg.data))
        in_progress = ProtocolError("start: a call with this call_id is already in progress")
        if record.call_id and self.registry.has_call(record.call_id):
            raise in_progress
        if record.call_id and await id_in_use(self.registry, record.call_id):
            raise ProtocolError("start: this call_id was already used")
        try:
            return self.registry.new_session(record, NativeChannel(ws, fmt)), fmt
        except KeyError:  # started while we looked in the store
            raise in_progress from None

    def _dispatch(self, msg: Any, session: CallSession, fmt: StreamFormat) -> bool:
        if msg.type is WSMsgType.BINARY:
            session.on_media(fmt.check(msg.data), fmt.encoding)
            return False
        if msg.type is not WSMsgType.TEXT:
            raise ProtocolError("unexpected WebSocket message type", UNSUPPORTED_DATA)
        event = parse_event(msg.data)
        kind = event["event"]
        if kind == "dtmf":
            digit = event.get("digit")
            if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#":
                raise ProtocolError("dtmf: digit must be one of 0-9 * #")
            session.on_dtmf(digit)
        elif kind == "mark":
            name = event.get("name")
            if not isinstance(name, str):
                raise ProtocolError("mark: missing name")
            session.on_mark(name)
        elif kind == "stop":
            return True
        elif kind == "start":
            raise ProtocolError("duplicate start")
        else:
            raise ProtocolError(f"unknown event {kind[:40]!r}")
        return False


async def _send_error(ws: web.WebSocketResponse, error: ProtocolError) -> None:
    if not ws.closed:
        await ws.send_str(json.dumps({"event": "error", "reason": error.reason}))
