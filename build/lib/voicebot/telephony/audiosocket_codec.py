"""Asterisk AudioSocket framing, as pure functions (no I/O).

Every frame is a 1-byte kind, a 2-byte big-endian payload length and the
payload. Kinds: hangup 0x00 (no payload), UUID 0x01 (16 bytes, binary),
DTMF 0x03 (one ASCII digit), audio 0x10 (signed 16-bit little-endian PCM,
8 kHz mono; Asterisk sends 320 bytes per 20 ms) and error 0xff (an optional
one-byte code). See docs/protocol.md.

The length is checked from the header alone, before any payload is read, so
a peer announcing 64 KB cannot make us buffer it.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

from voicebot.errors import ProtocolError

HEADER = struct.Struct(">BH")
HEADER_BYTES = HEADER.size
LINE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono
MAX_PAYLOAD = 8000  # 0.5 s of audio; Asterisk sends 20 ms (320 bytes) at a time
DTMF_DIGITS = "0123456789*#ABCD"
PROTOCOL_ERROR_CODE = 4000  # the metrics label for calls closed for a bad AudioSocket frame


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class CallUuid:
    value: str  # canonical string form, lower case


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes  # int16 little-endian at LINE_RATE


@dataclass(frozen=True, slots=True)
class GatewayError:
    code: int | None  # Asterisk: 1 hangup, 2 frame forwarding, 4 memory


Message = Hangup | CallUuid | Dtmf | Audio | GatewayError


def _error(reason: str) -> ProtocolError:
    return ProtocolError(reason, PROTOCOL_ERROR_CODE)


def parse_header(header: bytes, max_payload: int = MAX_PAYLOAD) -> tuple[Kind, int]:
    """The kind and payload length of a frame; raises ProtocolError for an unknown
    kind or a length over `max_payload`."""
    if len(header) != HEADER_BYTES:
        raise _error(f"frame header must be {HEADER_BYTES} bytes, got {len(header)}")
    raw_kind, length = HEADER.unpack(header)
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise _error(f"unknown frame kind 0x{raw_kind:02x}") from None
    if length > max_payload:
        raise _error(f"frame of {length} bytes is over the limit of {max_payload}")
    return kind, length


def parse_payload(kind: Kind, payload: bytes) -> Message:
    """The typed message of one frame; raises ProtocolError when the payload does
    not fit its kind."""
    if kind is Kind.HANGUP:
        return Hangup()
    if kind is Kind.UUID:
        if len(payload) != 16:
            raise _error(f"UUID frame must carry 16 bytes, got {len(payload)}")
        return CallUuid(str(uuid.UUID(bytes=payload)))
    if kind is Kind.DTMF:
        digit = payload.decode("ascii", "replace")
        if len(payload) != 1 or digit not in DTMF_DIGITS:
            raise _error("DTMF frame must carry one of 0-9 * # A-D")
        return Dtmf(digit)
    if kind is Kind.AUDIO:
        if len(payload) % 2:
            raise _error("audio frame has an odd number of bytes")
        return Audio(payload)
    return GatewayError(payload[0] if payload else None)


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return HEADER.pack(kind, len(payload)) + payload


def hangup_frame() -> bytes:
    return encode(Kind.HANGUP)


def uuid_frame(value: str) -> bytes:
    return encode(Kind.UUID, uuid.UUID(value).bytes)


def dtmf_frame(digit: str) -> bytes:
    return encode(Kind.DTMF, digit.encode("ascii"))


def audio_frame(pcm: bytes) -> bytes:
    return encode(Kind.AUDIO, pcm)
