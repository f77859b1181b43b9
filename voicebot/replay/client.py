"""A gateway simulator: streams a recording to a running voicebot the way a
real gateway would (20 ms frames, real-time pace by default), plays the bot's
audio on a simulated line clock, echoes marks when that audio has "played",
honours `clear`, sends DTMF and hangs up on cue. Used by tests and operators.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit
from xml.etree import ElementTree

import aiohttp
import numpy as np

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.signing import twilio_signature

FRAME_MS = 20
MarkMode = Literal["played", "immediate", "never"]
SPEAKING_GAP_S = 0.3  # bot audio after this long without any starts a "speaking" event


@dataclass
class ReplayOptions:
    protocol: Literal["twilio", "native"] = "native"
    speed: float = 1.0  # 1 = real time; 0 = as fast as the socket takes it
    marks: MarkMode = "played"
    dtmf: list[tuple[float, str]] = field(default_factory=list)  # (seconds, digit)
    hangup_at: float | None = None  # seconds into the stream
    max_call_s: float = 90.0  # stay on the line (sending silence) at most this long
    sample_rate: int = 8000  # native only
    encoding: Literal["pcm16", "mulaw"] = "pcm16"  # native only
    labels: dict[str, str] = field(default_factory=dict)  # native only: caller-group labels
    caller: str = "+15550123"
    call_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # how the caller answers "Do you want me to connect you to a person?" once
    # it has played: "yes" keys 1 (as a caller who asked would), "no" keys 2,
    # "none" says nothing
    confirm: Literal["yes", "no", "none"] = "yes"
    # keys pressed once a prompt has played, by prompt name: {"disclosure": "9"}
    # opts out right after the disclosure, {"recording_consent": "1"} allows recording
    keys_after: dict[str, str] = field(default_factory=dict)
    # Twilio only: the server's auth token and public URL, to sign the webhook
    # and the stream as Twilio would (needed when the server checks signatures)
    twilio_auth_token: str = ""
    public_url: str = ""
    # called with each event from the bot as it arrives (its "t" set): tests wait on these
    on_event: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    # after the recording, hang up as soon as this holds of what the bot did so far
    # (before `hangup_at`/`max_call_s`): a caller who waits for an answer, not a clock
    hangup_when: Callable[[ReplayResult], bool] | None = field(default=None, repr=False)


@dataclass
class ReplayResult:
    call_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # what the bot sent, timed
    bot_audio: list[np.ndarray] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    first_audio_s: float | None = None  # stream start → first bot audio
    marks_echoed: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def outcome(self) -> str:
        """`handoff:<reason>` / `completed` from the close reason, else `abandoned`."""
        if self.close_reason.startswith("handoff") or self.close_reason == "completed":
            return self.close_reason
        return "abandoned"

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.bot_audio) if self.bot_audio else np.zeros(0, np.int16)


class _Line:
    """The gateway's playout buffer, on a clock that runs `speed` times real time."""

    def __init__(self, speed: float, mode: MarkMode, echo: Any) -> None:
        self.speed = speed
        self.mode = mode
        self.echo = echo
        self.play_end = 0.0
        self.pending: list[asyncio.TimerHandle] = []
        self.pending_names: list[str] = []

    def audio(self, seconds: float) -> None:
        now = time.monotonic()
        self.play_end = max(self.play_end, now) + (seconds / self.speed if self.speed else 0.0)

    def mark(self, name: str) -> None:
        if self.mode == "never":
            return
        loop = asyncio.get_running_loop()
        delay = 0.0 if self.mode == "immediate" else max(0.0, self.play_end - time.monotonic())
        self.pending_names.append(name)
        self.pending.append(loop.call_later(delay, self._fire, name))

    def _fire(self, name: str) -> None:
        if name in self.pending_names:
            self.pending_names.remove(name)
            self.echo(name)

    def clear(self) -> None:
        self.play_end = time.monotonic()
        for handle in self.pending:
            handle.cancel()
        names, self.pending_names, self.pending = self.pending_names, [], []
        for name in names:  # Twilio echoes the marks of cleared audio at once
            self.echo(name)


async def replay(url: str, samples: np.ndarray, rate: int, options: ReplayOptions) -> ReplayResult:
    """Stream `samples` (int16 mono at `rate`) as one call; return what the bot did."""
    from voicebot.audio.resample import resample

    line_rate = 8000 if options.protocol == "twilio" else options.sample_rate
    audio = resample(samples, rate, line_rate)
    result = ReplayResult(call_id=options.call_id or f"replay-{uuid.uuid4().hex[:12]}")
    async with aiohttp.ClientSession() as http:
        headers, parameters = dict(options.headers), {"caller": options.caller}
        if options.protocol == "twilio":
            parameters, signature = await twilio_webhook(http, url, options, result.call_id)
            headers.update(signature)
        async with http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
            call = _Call(ws, options, result, line_rate, parameters)
            await call.run(audio)
    return result


async def twilio_webhook(http: aiohttp.ClientSession, media_url: str, options: ReplayOptions,
                         call_sid: str) -> tuple[dict[str, str], dict[str, str]]:
    """What Twilio does when a call comes in: POST /twilio/voice (on the host of
    `media_url`), then open the TwiML's <Stream> with its <Parameter>s (among
    them the call's stream token). Returns those parameters and the signature
    header for the stream."""
    parts = urlsplit(media_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    webhook = f"{scheme}://{parts.netloc}{parts.path.removesuffix('/twilio/media')}/twilio/voice"
    form = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Direction": "inbound", "From": options.caller,
            "To": "+15550100"}
    public = options.public_url.rstrip("/") or f"{scheme}://{parts.netloc}"
    headers = {}
    if options.twilio_auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(
            options.twilio_auth_token, public + "/twilio/voice", form)
    async with http.post(webhook, data=form, headers=headers) as response:
        if response.status != 200:
            raise ConnectionError(f"/twilio/voice answered {response.status}")
        twiml = ElementTree.fromstring(await response.text())
    stream = twiml.find("./Connect/Stream")
    if stream is None:
        raise ConnectionError("/twilio/voice answered no <Connect><Stream>")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    if not options.twilio_auth_token:
        return parameters, {}
    return parameters, {"X-Twilio-Signature": twilio_signature(
        options.twilio_auth_token, stream.get("url", ""))}


class _Call:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, options: ReplayOptions,
                 result: ReplayResult, line_rate: int, parameters: dict[str, str]) -> None:
        self.ws = ws
        self.parameters = parameters  # Twilio's customParameters
        self.o = options
        self.result = result
        self.rate = line_rate
        self.sid = "MZ" + uuid.uuid4().hex
        self.t0 = 0.0
        self.line = _Line(options.speed, options.marks, self._echo)
        self._last_audio_s = float("-inf")
        self._tail_anchor: float | None = None
        self._sends: set[asyncio.Future[None]] = set()

    def _now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, audio: np.ndarray) -> None:
        self.t0 = time.monotonic()
        await self._send_start()
        receiver = asyncio.create_task(self._receive())
        sender = asyncio.create_task(self._send_audio(audio))
        done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and not receiver.done():
            await self._hang_up()
            await asyncio.wait_for(receiver, 10)
        sender.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)
        for handle in self.line.pending:
            handle.cancel()
        self.result.close_code = self.ws.close_code

    async def _send_start(self) -> None:
        if self.o.protocol == "twilio":
            await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await self.ws.send_str(json.dumps({
                "event": "start", "sequenceNumber": "1", "streamSid": self.sid,
                "start": {"streamSid": self.sid, "callSid": self.result.call_id,
                          "accountSid": "AC" + "0" * 32, "tracks": ["inbound"],
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                          "customParameters": self.parameters},
            }))
        else:
            await self.ws.send_str(json.dumps({
                "event": "start", "call_id": self.result.call_id, "caller": self.o.caller,
                **({"labels": self.o.labels} if self.o.labels else {}),
                "sample_rate": self.rate, "encoding": self.o.encoding,
            }))

    async def _send_audio(self, audio: np.ndarray) -> None:
        step = self.rate * FRAME_MS // 1000
        dtmf = sorted(self.o.dtmf)
        frame_index = 0
        silence = np.zeros(step, np.int16)
        limit = self.o.hangup_at if self.o.hangup_at is not None else self.o.max_call_s
        while frame_index * FRAME_MS / 1000 < limit and not self.ws.closed:
            at = frame_index * FRAME_MS / 1000
            while dtmf and dtmf[0][0] <= at:
                await self._send_dtmf(dtmf.pop(0)[1])
            start = frame_index * step
            if start >= audio.size and self.o.hangup_when is not None and self.o.hangup_when(self.result):
                break
            frame = audio[start : start + step] if start < audio.size else silence
            if frame.size < step:
                frame = np.concatenate((frame, silence[: step - frame.size]))
            await self._send_frame(frame, frame_index)
            frame_index += 1
            await self._pace(frame_index, start >= audio.size)

    async def _pace(self, frames_sent: int, in_tail: bool) -> None:
        """Real time (or `speed` times it) for the recording; the silence a caller
        keeps sending while waiting on the line always goes at real time."""
        sent_s = frames_sent * FRAME_MS / 1000
        if in_tail or self.o.speed == 1:
            if self._tail_anchor is None:
                self._tail_anchor = time.monotonic() - sent_s
            delay = self._tail_anchor + sent_s - time.monotonic()
        elif self.o.speed:
            delay = self.t0 + sent_s / self.o.speed - time.monotonic()
        else:
            delay = 0.0 if frames_sent % 50 else -1.0
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < 0:
            await asyncio.sleep(0)

    async def _send_frame(self, frame: np.ndarray, index: int) -> None:
        if self.o.protocol == "twilio":
            payload = base64.b64encode(ulaw_encode(frame)).decode()
            await self.ws.send_str(json.dumps({
                "event": "media", "streamSid": self.sid, "sequenceNumber": str(index + 2),
                "media": {"track": "inbound", "chunk": str(index + 1),
                          "timestamp": str(index * FRAME_MS), "payload": payload},
            }))
        elif self.o.encoding == "mulaw":
            await self.ws.send_bytes(ulaw_encode(frame))
        else:
            await self.ws.send_bytes(frame.astype("<i2").tobytes())

    async def _send_dtmf(self, digit: str) -> None:
        if self.o.protocol == "twilio":
            msg = {"event": "dtmf", "streamSid": self.sid, "dtmf": {"track": "inbound_track", "digit": digit}}
        else:
            msg = {"event": "dtmf", "digit": digit}
        await self.ws.send_str(json.dumps(msg))

    async def _hang_up(self) -> None:
        if not self.ws.closed:
            stop: dict[str, str] = {"event": "stop"}
            if self.o.protocol == "twilio":
                stop["streamSid"] = self.sid
            await self.ws.send_str(json.dumps(stop))
            await self.ws.close()

    def _echo(self, name: str) -> None:
        if self.ws.closed:
            return
        if self.o.protocol == "twilio":
            msg = {"event": "mark", "streamSid": self.sid, "mark": {"name": name}}
        else:
            msg = {"event": "mark", "name": name}
        self.result.marks_echoed.append(name)
        # Our own record of when the gateway says a prompt finished playing.
        self.result.events.append({"event": "played", "name": name, "t": round(self._now(), 3)})
        task = asyncio.ensure_future(self.ws.send_str(json.dumps(msg)))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        digit = self.o.keys_after.get(name.partition("-")[2], "")
        if name.endswith("-confirm_human") and self.o.confirm != "none":
            digit = "1" if self.o.confirm == "yes" else "2"
        if digit:
            answer = asyncio.ensure_future(self._send_dtmf(digit))
            self._sends.add(answer)
            answer.add_done_callback(self._sends.discard)

    async def _receive(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self._bot_audio(np.frombuffer(msg.data, "<i2") if self.o.encoding == "pcm16"
                                else ulaw_decode(msg.data))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self._bot_event(json.loads(msg.data))
            else:
                if msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.extra, str):
                    self.result.close_reason = self.result.close_reason or msg.extra
                break
        self.result.close_code = self.ws.close_code

    def _bot_audio(self, samples: np.ndarray) -> None:
        now = self._now()
        if self.result.first_audio_s is None:
            self.result.first_audio_s = now
        if now - self._last_audio_s > SPEAKING_GAP_S:  # the bot starts speaking (again)
            self.result.events.append({"event": "speaking", "t": round(now, 3)})
        self._last_audio_s = now
        self.result.bot_audio.append(samples)
        self.line.audio(samples.size / self.rate)

    def _bot_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if self.o.protocol == "twilio" and kind == "media":
            self._bot_audio(ulaw_decode(base64.b64decode(event["media"]["payload"])))
            return
        event = {**event, "t": round(self._now(), 3)}
        self.result.events.append(event)
        if self.o.on_event is not None:
            self.o.on_event(event)
        if kind == "mark":
            self.line.mark(event["mark"]["name"] if "mark" in event else event["name"])
        elif kind == "clear":
            self.line.clear()
        elif kind == "end":
            self.result.close_reason = event.get("reason", "")


__all__ = ["ReplayOptions", "ReplayResult", "replay"]
