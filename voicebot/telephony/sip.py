"""A SIP endpoint (`voicebot serve --sip-port 5060`): answers calls over UDP
with G.711 μ-law or A-law RTP and RFC 4733 DTMF, using aiosipua (SIP) and
aiortp (RTP), both asyncio and made for voice backends. Imported only when
the SIP port is set (the `sip` extra).

Per call: the INVITE's SDP offer is answered with PCMU or PCMA, caller audio
goes to the call session as PCM16 at 8 kHz, DTMF events as key presses, and
the bot's audio goes back paced in 20 ms frames (`paced.py`). A BYE from the
caller ends the call; a call the bot completes ends with our BYE.

Handoff is a blind transfer: a REFER to the target the bot chose, carrying
the call id in `X-Voicebot-Call-Id` and `User-to-User` (RFC 7433, hex), and
in the Refer-To URI so the receiving PBX sees it on its INVITE. When the
REFER is refused, a NOTIFY reports a failure, or no final NOTIFY comes within
`VOICEBOT_SIP_TRANSFER_TIMEOUT_S`, the bot takes the call back, says that a
person will call back (the desk shows a call back), and hangs up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from aiortp.port_allocator import PortAllocator
from aiosipua import IncomingCall, SdpNegotiationError, SipRequest, SipResponse, SipUAC, SipUAS
from aiosipua.rtp_bridge import CallSession as RtpCall
from aiosipua.transport import UdpSipTransport, _UdpProtocol

from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallSession
from voicebot.config import Settings
from voicebot.storage.base import CallRecord
from voicebot.telephony.human_line import HumanLine
from voicebot.telephony.paced import LINE_RATE, PacedChannel
from voicebot.telephony.ws_common import finish_call, start_call

log = logging.getLogger(__name__)

CODECS = [0, 8]  # PCMU, PCMA
CALL_ID_HEADER = "X-Voicebot-Call-Id"


def refer_target(target: str, caller_host: str) -> str:
    """A SIP URI for the human line: `sip:`/`sips:` as given, a number or name
    at the caller's host otherwise (the PBX that sent us the call routes it)."""
    if target.startswith(("sip:", "sips:")):
        return target
    return f"sip:{target}@{caller_host}"


def dtmf_payload_type(offer: Any, default: int = 101) -> int:
    """The offer's telephone-event payload type: the answer must use the same
    number (RFC 3264 §6.1), and aiosipua would otherwise answer with its own."""
    audio = offer.audio
    for codec in audio.codecs if audio is not None else ():
        if codec.encoding_name.lower() == "telephone-event":
            return int(codec.payload_type)
    return default


def transfer_headers(call_id: str) -> dict[str, str]:
    return {CALL_ID_HEADER: call_id, "User-to-User": f"{call_id.encode().hex()};encoding=hex"}


def refer_to(target: str, call_id: str) -> str:
    """`<target?User-to-User=…&X-Voicebot-Call-Id=…>`: URI headers the transferee
    copies onto its INVITE to the target (RFC 3261 §19.1.5, RFC 7434)."""
    headers = "&".join(f"{name}={quote(value, safe='')}"
                       for name, value in transfer_headers(call_id).items())
    joiner = "&" if "?" in target else "?"
    return f"<{target}{joiner}{headers}>"


class _UdpProtocol311(_UdpProtocol):
    """aiosipua asserts `asyncio.DatagramTransport`, which Python 3.11's selector
    transport is not (3.12 made it one); the transport works all the same."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._udp_transport = transport  # type: ignore[assignment]  # noqa: SLF001


class _UdpTransport(UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: _UdpProtocol311(self), local_addr=self.local_addr)


class SipEndpoint:
    def __init__(self, settings: Settings, registry: CallRegistry, line: HumanLine) -> None:
        self.settings = settings
        self.registry = registry
        self.line = line
        self.host = settings.sip_host or settings.host
        low, high = (int(p) for p in settings.sip_rtp_ports.split("-"))
        self.ports = PortAllocator((low, high))
        self._transport: _UdpTransport | None = None
        self._uas: SipUAS | None = None
        self._calls: dict[str, _SipCall] = {}  # by SIP Call-ID
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int) -> None:
        self._transport = _UdpTransport(local_addr=(self.host, port))
        self._uas = SipUAS(self._transport, uac=SipUAC(self._transport), user_agent="voicebot")
        self._uas.on_invite = self._invite
        self._uas.on_bye = self._bye
        self._uas.on_transfer_progress = self._notify
        await self._uas.start()
        # Responses to our REFER are not surfaced by aiosipua for incoming calls:
        # look at them before handing everything else on.
        inner = self._transport.on_message
        assert inner is not None

        def on_message(msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
            if isinstance(msg, SipResponse) and msg.cseq is not None and msg.cseq.method.upper() == "REFER":
                call = self._calls.get(msg.call_id or "")
                if call is not None:
                    call.progress.put_nowait(("refer", msg.status_code))
                return
            inner(msg, addr)

        self._transport.on_message = on_message
        log.info("SIP: listening on udp %s:%d", self.host, port)

    async def close(self, grace_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._uas is not None:
            await self._uas.stop()

    def _invite(self, invite: IncomingCall) -> None:
        call = _SipCall(self, invite)
        self._calls[invite.call_id] = call
        task = asyncio.create_task(call.run(), name=f"sip-{invite.call_id}")
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._calls.pop(invite.call_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("SIP call failed: %r", task.exception())

        task.add_done_callback(done)

    def _bye(self, invite: IncomingCall, request: SipRequest) -> None:
        call = self._calls.get(invite.call_id)
        if call is not None:
            call.hung_up.set()

    def _notify(self, sip_call_id: str, status: int, reason: str) -> None:
        call = self._calls.get(sip_call_id)
        if call is not None:
            call.progress.put_nowait(("notify", status))


class _SipCall:
    def __init__(self, endpoint: SipEndpoint, invite: IncomingCall) -> None:
        self.endpoint = endpoint
        self.invite = invite
        self.hung_up = asyncio.Event()
        self.progress: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.finished = ""  # the session's end reason: "completed" or "handoff:<reason>"

    async def run(self) -> None:
        e, invite = self.endpoint, self.invite
        if not e.registry.ready:
            invite.reject(503, "Starting Up")
            return
        if invite.sdp_offer is None:
            invite.reject(488, "Not Acceptable Here")
            return
        try:
            rtp_port, _ = await e.ports.allocate()
        except RuntimeError:  # every RTP port of the range is in use
            log.warning("SIP call refused: no free RTP port in %s", e.settings.sip_rtp_ports)
            invite.reject(503, "Service Unavailable")
            return
        try:
            media = RtpCall(e.host, rtp_port, invite.sdp_offer, supported_codecs=CODECS,
                            dtmf_payload_type=dtmf_payload_type(invite.sdp_offer))
        except (SdpNegotiationError, ValueError) as exc:
            log.warning("SIP call refused: %s", exc)
            invite.reject(488, "Not Acceptable Here")
            await e.ports.release(rtp_port)
            return
        try:
            invite.accept(media.sdp_answer)
            await media.start()
            await self._converse(media)
        finally:
            self._bye()  # cut short (shutdown, an error): the caller is not left in silence
            media.on_audio = media.on_dtmf = None
            await media.close()
            await e.ports.release(rtp_port)

    async def _converse(self, media: RtpCall) -> None:
        e = self.endpoint
        channel = PacedChannel(self._send(media), self._finish)
        record = CallRecord(call_id="", gateway="sip", gateway_call_id=self.invite.call_id,
                            caller=_user(self.invite.caller))
        session = e.registry.new_session(record, channel)
        channel.on_played = session.on_mark
        media.on_audio = lambda pcm, ts: session.on_media(pcm, "pcm16")
        media.on_dtmf = lambda digit, duration: session.on_dtmf(digit)
        call = start_call(e.registry, session)
        playout = asyncio.create_task(channel.run(), name="sip-playout")
        hung_up = asyncio.create_task(self.hung_up.wait(), name="sip-bye")
        try:
            await asyncio.wait({call, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            await finish_call(e.registry, session, call)
            media.on_audio = media.on_dtmf = None
            if self.hung_up.is_set():
                return
            if self.finished.startswith("handoff"):
                await self._transfer(session, channel)
        finally:
            for task in (playout, hung_up):
                task.cancel()
            await asyncio.gather(playout, hung_up, return_exceptions=True)

    def _send(self, media: RtpCall) -> Any:
        async def send(pcm: bytes) -> bool:
            if self.hung_up.is_set():
                return False
            media.rtp_session.send_audio_pcm_auto(pcm)
            return True

        return send

    async def _finish(self, reason: str) -> None:
        self.finished = reason

    def _bye(self) -> None:
        """Our BYE, once: `hangup()` does nothing on a dialog already ended."""
        if not self.hung_up.is_set():
            self.invite.hangup()
            self.hung_up.set()

    async def _transfer(self, session: CallSession, channel: PacedChannel) -> None:
        """Blind transfer; on failure take the call back and promise a call back."""
        record = session.recorder.record
        target = refer_target(record.handoff_target, self.invite.source_addr[0])
        self._send_refer(target, record.call_id)
        status = await self._transfer_result()
        log.info("SIP call %s: transfer %s", record.call_id, status)
        if status == "connected" or self.hung_up.is_set():  # a caller gone while it rang: abandoned
            await self.endpoint.line.ended(record.call_id, status == "connected", False, status)
            return
        reply = await self.endpoint.line.ended(record.call_id, False, True, status)
        services = self.endpoint.registry.services
        assert services is not None
        samples = await services.prompts.get(services.flow.voice(reply.language), reply.say, LINE_RATE)
        played = asyncio.get_running_loop().create_future()

        def on_played(name: str) -> None:
            if not played.done():
                played.set_result(name)

        channel.on_played = on_played
        await channel.send_audio(samples)
        await channel.send_mark("human_unavailable")
        waiting = asyncio.create_task(self.hung_up.wait())
        await asyncio.wait({played, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()

    def _send_refer(self, target: str, call_id: str) -> None:
        invite = self.invite
        host, port = invite._signaling_addr()  # noqa: SLF001 - the address our Via must name
        refer = invite.dialog.create_request("REFER", via_host=host, via_port=port)
        refer.headers.set_single("Refer-To", refer_to(target, call_id))
        refer.headers.set_single("Referred-By", f"<sip:voicebot@{host}:{port}>")
        refer.headers.set_single("Contact", f"<sip:voicebot@{host}:{port}>")
        for name, value in transfer_headers(call_id).items():
            refer.headers.set_single(name, value)
        assert invite.transport is not None
        invite.transport.send(refer, invite.source_addr)

    async def _transfer_result(self) -> str:
        """`connected`, or why not: `refused-<code>`, `failed-<code>`, `no-answer`, `hung-up`."""
        timeout = self.endpoint.settings.sip_transfer_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.hung_up.is_set():
            left = deadline - asyncio.get_running_loop().time()
            try:
                kind, code = await asyncio.wait_for(self._next_progress(), max(0.0, left))
            except TimeoutError:
                return "no-answer"
            if kind == "refer" and code >= 300:
                return f"refused-{code}"
            if kind == "notify" and 200 <= code < 300:
                return "connected"
            if kind == "notify" and code >= 300:
                return f"failed-{code}"
        return "hung-up"

    async def _next_progress(self) -> tuple[str, int]:
        waiting = asyncio.create_task(self.hung_up.wait())
        item = asyncio.create_task(self.progress.get())
        try:
            await asyncio.wait({waiting, item}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            if not item.done():
                item.cancel()
        return item.result() if item.done() and not item.cancelled() else ("bye", 0)


def _user(uri: str) -> str:
    """The user part of the caller's URI (their number, when the PBX sends one)."""
    user = uri.split(":", 1)[-1].split("@", 1)[0]
    return user if "@" in uri.split(":", 1)[-1] else ""
