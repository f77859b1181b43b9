"""Twilio Media Streams messages: parse what Twilio sends, format what we send.

Pure functions over typed messages; anything malformed raises ProtocolError
with a reason that is sent back as the WebSocket close reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.errors import ProtocolError
from voicebot.telephony.ids import check_id

MAX_MEDIA_BYTES = 16000  # 2 s of μ-law; Twilio sends 160-byte (20 ms) payloads


@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    encoding: str
    sample_rate: int
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    payload: bytes  # μ-law bytes
    track: str = "inbound"


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    pass


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop


def parse(text: str) -> TwilioMessage:
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):  # ValueError: also integers of over 4300 digits
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message must be a JSON object")
    event = msg.get("event")
    parser = _PARSERS.get(event) if isinstance(event, str) else None
    if parser is None:
        raise ProtocolError(f"unknown event {str(event)[:40]!r}")
    return parser(msg)


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{msg.get('event')}: missing object {key!r}")
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{where}: missing string {key!r}")
    return value


def _connected(msg: dict[str, Any]) -> Connected:
    return Connected(str(msg.get("protocol", "")))


def _start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start")
    fmt = start.get("mediaFormat") or {}
    if not isinstance(fmt, dict):
        raise ProtocolError("start: mediaFormat must be an object")
    encoding = fmt.get("encoding", "audio/x-mulaw")
    rate = fmt.get("sampleRate", 8000)
    if encoding != "audio/x-mulaw" or rate != 8000:
        raise ProtocolError(f"start: unsupported media format {encoding!r} at {rate!r} Hz")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("start: customParameters must be an object")
    stream_sid = (_str(msg, "streamSid", "start") if "streamSid" in msg
                  else _str(start, "streamSid", "start"))
    return Start(
        stream_sid=check_id(stream_sid, "start: streamSid"),
        call_sid=check_id(_str(start, "callSid", "start"), "start: callSid"),
        encoding=encoding, sample_rate=rate,
        custom_parameters={str(k): str(v) for k, v in params.items()},
    )


def _media(msg: dict[str, Any]) -> Media:
    media = _obj(msg, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError("media: missing payload")
    if len(payload) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise ProtocolError("media: payload too large")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media: payload is not valid base64") from None
    return Media(audio, str(media.get("track", "inbound")))


def _dtmf(msg: dict[str, Any]) -> Dtmf:
    digit = _str(_obj(msg, "dtmf"), "digit", "dtmf")
    if digit not in "0123456789*#" or len(digit) != 1:
        raise ProtocolError("dtmf: digit must be one of 0-9 * #")
    return Dtmf(digit)


def _mark(msg: dict[str, Any]) -> Mark:
    return Mark(_str(_obj(msg, "mark"), "name", "mark"))


_PARSERS: dict[str, Callable[[dict[str, Any]], TwilioMessage]] = {
    "connected": _connected, "start": _start, "media": _media,
    "dtmf": _dtmf, "mark": _mark, "stop": lambda msg: Stop(),
}


def media_message(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
