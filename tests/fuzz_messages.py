"""Hypothesis strategies for gateway traffic, and oracles that say, from the
protocol documentation alone, what the server must do with a sequence.

A sequence is a list of `Frame`s: some well-formed traffic, usually one bad or
out-of-order message somewhere, and whatever follows it. The oracle walks the
sequence the way docs/protocol.md describes and returns the first message that
must close the call, with its close code (or that the call ends on `stop`, or
that it stays open until the client leaves).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

MAX_BYTES = 4096  # the fuzz server's VOICEBOT_MAX_MESSAGE_BYTES (small: huge frames are cheap)
CALL_ID = "<call-id>"  # replaced by a fresh id when sent, so starts never collide
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # call ids, CallSids, StreamSids (docs/protocol.md)
DIGITS = "0123456789*#"


@dataclass(frozen=True)
class Frame:
    kind: str  # "text" | "binary" | "raw_text" (bytes sent as a TEXT frame, e.g. bad UTF-8)
    data: Any  # str for text, bytes otherwise

    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Expect:
    index: int | None  # the message that ends the call; None = open until the client leaves
    code: int | None = None  # close code the server must send
    reason: bool = True  # a close reason (and, native, an `error` event) must come with it
    stop: bool = False  # ended by the gateway's stop: close 1000 "stopped", no error


def text(obj: Any) -> Frame:
    return Frame("text", json.dumps(obj))


# --- building blocks ----------------------------------------------------------------
names = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=12)
junk = st.one_of(st.none(), st.booleans(), st.integers(-9, 99999), st.floats(allow_nan=False),
                 st.text(max_size=8), st.lists(st.integers(), max_size=2), st.just({}))
bad_json = st.one_of(
    st.text(max_size=40).map(lambda t: "{" + t),
    st.sampled_from(["", "nul", "{'event': 'start'}", '{"event": "start",}', "[" * 2000 + "]" * 2000,
                     '{"event": "media", "media": {"payload": "AAAA"}']),
)
not_an_event = st.one_of(
    st.sampled_from(["[]", "1", '"start"', "null", "{}", '{"event": null}', '{"event": 7}']),
    names.map(lambda n: json.dumps({"event": "x-" + n})),
)
huge = st.one_of(
    st.integers(MAX_BYTES + 1, 2 * MAX_BYTES).map(lambda n: Frame("binary", b"\x01" * n)),
    st.integers(MAX_BYTES + 1, 2 * MAX_BYTES).map(lambda n: Frame("text", "x" * n)),
    st.just(Frame("binary", b"\x00" * (3 * MAX_BYTES))),  # beyond what the reader takes in
)
bad_utf8 = st.sampled_from([b"\xff\xfe", b'{"event":"stop"\xc3}', b"\xed\xa0\x80"]).map(
    lambda b: Frame("raw_text", b))
common_bad = st.one_of(bad_json.map(lambda t: Frame("text", t)), not_an_event.map(
    lambda t: Frame("text", t)), huge, bad_utf8)


# --- native protocol ------------------------------------------------------------------
native_start = st.fixed_dictionaries(
    {"event": st.just("start"), "call_id": st.just(CALL_ID)},
    optional={"sample_rate": st.sampled_from([8000, 16000]), "caller": st.text(max_size=20),
              "encoding": st.sampled_from(["pcm16", "mulaw"])},
).map(text)
native_bad_start = st.one_of(
    st.fixed_dictionaries({"event": st.just("start"), "call_id": st.just(CALL_ID),
                           "sample_rate": st.one_of(junk, st.sampled_from([44100, 8000.0, 0]))}),
    st.fixed_dictionaries({"event": st.just("start"), "encoding": st.one_of(junk, st.just("opus"))}),
    st.fixed_dictionaries({"event": st.just("start"), "call_id": st.one_of(
        st.integers(), st.just("c" * 129), st.none())}),
    st.fixed_dictionaries({"event": st.just("start"), "caller": st.one_of(st.integers(), st.none())}),
).map(text)
native_audio = st.one_of(
    st.binary(max_size=640), st.just(b"\x00" * 320),
    st.integers(0, 320).map(lambda n: b"\x00" * (2 * n + 1)),  # odd-length PCM16
).map(lambda b: Frame("binary", b))
native_dtmf = st.one_of(st.sampled_from(list(DIGITS)), junk, st.sampled_from(["", "00", "a"]))
native_traffic = st.one_of(  # well-formed, valid in any order once started
    st.binary(max_size=320).map(lambda b: Frame("binary", b[: len(b) & ~1])),
    st.just(Frame("binary", b"\x00" * 320)), st.just(Frame("binary", b"")),
    st.sampled_from(list(DIGITS)).map(lambda d: text({"event": "dtmf", "digit": d})),
    names.map(lambda n: text({"event": "mark", "name": "x-" + n})),
)
native_event = st.one_of(
    native_dtmf.map(lambda d: text({"event": "dtmf", "digit": d})),
    st.one_of(names.map(lambda n: "x-" + n), junk).map(lambda n: text({"event": "mark", "name": n})),
    st.just(text({"event": "dtmf"})), st.just(text({"event": "mark"})),
    st.just(text({"event": "stop"})),
)
native_any = st.one_of(native_audio, native_audio, native_audio, native_event, native_start,
                       native_bad_start, common_bad)
native_bad = st.one_of(  # one kind of trouble each, equally likely
    native_audio, native_event, native_start, native_bad_start, bad_json.map(lambda t: Frame("text", t)),
    not_an_event.map(lambda t: Frame("text", t)), huge, bad_utf8)


@st.composite
def native_sequences(draw: st.DrawFn) -> list[Frame]:
    head = [draw(draw(st.sampled_from([native_start] * 8 + [native_bad_start, native_any])))]
    body = draw(st.lists(native_traffic, min_size=10, max_size=80))
    return head + body + _tail(draw, native_bad, native_any, text({"event": "stop"}))


def _tail(draw: st.DrawFn, bad: st.SearchStrategy[Frame], anything: st.SearchStrategy[Frame],
          stop: Frame) -> list[Frame]:
    """Usually one kind of trouble and whatever follows it; sometimes a stop and
    events after it; sometimes nothing (the caller just hangs up)."""
    ending = draw(st.sampled_from(["bad"] * 8 + ["stop", "none"]))
    if ending == "none":
        return []
    first = draw(bad) if ending == "bad" else stop
    return [first, *draw(st.lists(anything, max_size=6))]


def native_expect(frames: list[Frame]) -> Expect:
    started, pcm16 = False, True
    for i, frame in enumerate(frames):
        code = _transport_code(frame)
        if code is not None:
            return Expect(i, code, reason=frame.size() <= 2 * MAX_BYTES and code != 1007)
        if not started:
            if frame.kind != "text":
                return Expect(i, 1003)
            event = _event(frame.data)
            if event is None or event["event"] != "start" or not _native_start_ok(event):
                return Expect(i, 1008)
            started, pcm16 = True, event.get("encoding", "pcm16") == "pcm16"
            continue
        if frame.kind == "binary":
            if pcm16 and len(frame.data) % 2:
                return Expect(i, 1003)
            continue
        event = _event(frame.data)
        kind = event and event["event"]
        if kind == "stop":
            return Expect(i, 1000, stop=True)
        digit, name = (event or {}).get("digit"), (event or {}).get("name")
        if kind == "dtmf" and isinstance(digit, str) and len(digit) == 1 and digit in DIGITS:
            continue
        if kind == "mark" and isinstance(name, str):
            continue
        return Expect(i, 1008)
    return Expect(None)


def _native_start_ok(event: dict[str, Any]) -> bool:
    rate, encoding = event.get("sample_rate", 8000), event.get("encoding", "pcm16")
    call_id, caller = event.get("call_id", ""), event.get("caller", "")
    return (type(rate) is int and rate in (8000, 16000) and encoding in ("pcm16", "mulaw")
            and isinstance(call_id, str) and (call_id in ("", CALL_ID) or _safe(call_id))
            and isinstance(caller, str) and len(caller) <= 256)


# --- Twilio Media Streams -------------------------------------------------------------
def _safe(value: Any) -> bool:
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None


def _tw_start(fmt: Any = None, params: Any = None, call_sid: Any = CALL_ID, sid: Any = "MZ1",
              top_sid: bool = True) -> dict[str, Any]:
    start: dict[str, Any] = {"callSid": call_sid, "streamSid": sid,
                             "mediaFormat": fmt if fmt is not None else
                             {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    if params is not None:
        start["customParameters"] = params
    msg: dict[str, Any] = {"event": "start", "start": start}
    if top_sid:
        msg["streamSid"] = sid
    return msg


twilio_start = st.builds(_tw_start, params=st.one_of(st.none(), st.just({"caller": "+15550100"})),
                         top_sid=st.booleans()).map(text)
twilio_bad_start = st.one_of(
    st.builds(_tw_start, fmt=st.one_of(junk, st.fixed_dictionaries({
        "encoding": st.sampled_from(["audio/x-mulaw", "audio/l16", ""]),
        "sampleRate": st.sampled_from([16000, 44100, "8000", None])}))),
    st.builds(_tw_start, params=junk),
    # a valid CallSid other than the fresh one could repeat, and a used one is refused
    st.builds(_tw_start, call_sid=junk.filter(lambda v: not _safe(v))),
    st.builds(_tw_start, sid=st.one_of(junk, st.just(""))),
    st.just({"event": "start"}), st.just({"event": "start", "start": "now"}),
).map(text)
twilio_media = st.one_of(
    st.binary(max_size=320).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["!!!!", "AAA", "A===", "", "ÿÿ"]),  # not base64, or empty audio
    st.just("A" * 30000),  # over the 16000-byte payload cap
    junk,
).map(lambda payload: text({"event": "media", "streamSid": "MZ1",
                            "media": {"track": "inbound", "payload": payload}}))
twilio_traffic = st.one_of(  # well-formed, valid in any order once started
    st.binary(max_size=160).map(lambda b: text({"event": "media", "streamSid": "MZ1", "media": {
        "track": "inbound", "payload": base64.b64encode(b).decode()}})),
    st.sampled_from(list(DIGITS)).map(
        lambda d: text({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": d}})),
    names.map(lambda n: text({"event": "mark", "mark": {"name": "x-" + n}})),
    st.just(text({"event": "connected", "protocol": "Call"})),
)
twilio_event = st.one_of(
    twilio_media, twilio_media, twilio_media,
    st.one_of(st.sampled_from(list(DIGITS)), junk, st.just("12")).map(
        lambda d: text({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": d}})),
    st.one_of(names.map(lambda n: "x-" + n), junk).map(
        lambda n: text({"event": "mark", "mark": {"name": n}})),
    st.sampled_from([{"event": "media"}, {"event": "dtmf", "dtmf": 3}, {"event": "mark"},
                     {"event": "connected", "protocol": "Call"}, {"event": "stop"}]).map(text),
)
twilio_binary = st.binary(max_size=200).map(lambda b: Frame("binary", b))
twilio_any = st.one_of(twilio_event, twilio_start, twilio_bad_start, common_bad, twilio_binary)
twilio_bad = st.one_of(
    twilio_event, twilio_start, twilio_bad_start, bad_json.map(lambda t: Frame("text", t)),
    not_an_event.map(lambda t: Frame("text", t)), huge, bad_utf8, twilio_binary)


@st.composite
def twilio_sequences(draw: st.DrawFn) -> list[Frame]:
    head = [text({"event": "connected", "protocol": "Call", "version": "1.0.0"})]
    head.append(draw(draw(st.sampled_from([twilio_start] * 8 + [twilio_bad_start, twilio_any]))))
    body = draw(st.lists(twilio_traffic, min_size=10, max_size=80))
    return head + body + _tail(draw, twilio_bad, twilio_any, text({"event": "stop"}))


def twilio_expect(frames: list[Frame]) -> Expect:
    started = False
    for i, frame in enumerate(frames):
        code = _transport_code(frame)
        if code is not None:
            return Expect(i, code, reason=frame.size() <= 2 * MAX_BYTES and code != 1007)
        if frame.kind != "text":
            return Expect(i, 1003)
        event = _event(frame.data)
        kind = event["event"] if event else None
        if event is None or not _twilio_valid(kind, event):
            return Expect(i, 1008)
        if not started:
            if kind == "start":
                started = True
            elif kind != "connected":
                return Expect(i, 1008)  # "<kind> before start"
        elif kind == "start":
            return Expect(i, 1008)  # duplicate start
        elif kind == "stop":
            return Expect(i, 1000, stop=True)
    return Expect(None)


def _twilio_valid(kind: str | None, msg: dict[str, Any]) -> bool:
    if kind in ("connected", "stop"):
        return True
    if kind == "start":
        return _twilio_start_ok(msg)
    body = msg.get(kind or "")
    if not isinstance(body, dict):
        return False
    if kind == "media":
        payload = body.get("payload")
        return isinstance(payload, str) and len(payload) <= 16000 * 4 // 3 + 4 and _b64(payload)
    key = "digit" if kind == "dtmf" else "name"
    value = body.get(key)
    if not isinstance(value, str) or not value:
        return False
    return kind == "mark" or (len(value) == 1 and value in DIGITS)


def _twilio_start_ok(msg: dict[str, Any]) -> bool:
    start = msg.get("start")
    if not isinstance(start, dict):
        return False
    fmt = start.get("mediaFormat") or {}
    params = start.get("customParameters") or {}
    if not isinstance(fmt, dict) or not isinstance(params, dict):
        return False
    if fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw" or fmt.get("sampleRate", 8000) != 8000:
        return False
    sid = msg["streamSid"] if "streamSid" in msg else start.get("streamSid")
    call_sid = start.get("callSid")
    return _safe(sid) and (call_sid == CALL_ID or _safe(call_sid))


# --- shared -----------------------------------------------------------------------------
def _transport_code(frame: Frame) -> int | None:
    if frame.kind == "raw_text":
        return 1007
    if frame.size() > MAX_BYTES:
        return 1009
    return None


def _event(data: str) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    if event["event"] not in ("start", "media", "dtmf", "mark", "stop", "connected"):
        return None
    return event


def _b64(payload: str) -> bool:
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
