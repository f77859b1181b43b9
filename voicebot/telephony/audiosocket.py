"""Asterisk AudioSocket ingress: a TCP server that `AudioSocket(uuid,host:port)`
connects to, one connection per call.

The first frame must be the call's UUID, which becomes the call id. Audio
frames go to the call session as PCM16 at 8 kHz, DTMF frames as key presses,
and a hangup frame, an error frame or the socket closing end the call. The
bot's audio goes back paced in 20 ms frames (`paced.py`).

Handoff: when the bot hands over (or completes the call) it sends a hangup
frame and closes, so `AudioSocket()` returns and the dialplan asks
`GET /v1/calls/{uuid}/dial` where the caller goes (`call_route.py`). If that
dial is not answered, the dialplan connects the same UUID here again: that
second connection is the *return leg*, which tells the caller a person will
call back, marks the transfer a call back on the desk, and hangs up.

A bad frame, an oversize length, a peer that sends no UUID in time or stops
reading closes that one connection with a log line; no other call is touched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress

from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallSession
from voicebot.config import Settings
from voicebot.errors import ProtocolError
from voicebot.storage.base import CallRecord
from voicebot.telephony import audiosocket_codec as ac
from voicebot.telephony.audiosocket_writer import FrameWriter
from voicebot.telephony.human_line import HumanLine
from voicebot.telephony.paced import PacedChannel
from voicebot.telephony.ws_common import finish_call, start_call

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 5.0
RETURN_STATUS = "no-answer"  # what the return leg reports: the dialplan's Dial() did not connect


class AudioSocketServer:
    def __init__(self, settings: Settings, registry: CallRegistry, line: HumanLine) -> None:
        self.settings = settings
        self.registry = registry
        self.line = line
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)
        log.info("AudioSocket: listening on %s:%d", host, self.port)

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, grace_s: float) -> None:
        """Stop listening; give connections `grace_s` to end, then cut them."""
        self.stop_listening()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # let the kernel find a peer that vanished without a FIN
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        out = FrameWriter(writer, WRITE_TIMEOUT_S, "connection")
        try:
            await _Connection(self, reader, out).run()
        except ProtocolError as error:
            log.warning("audiosocket %s: closing: %s", out.label, error.reason)
            self.registry.metrics.protocol_errors.labels(str(error.code)).inc()
        except Exception:  # a bug here must not take the server, or another call, down
            log.exception("audiosocket %s: internal error, closing", out.label)
        finally:
            if not out.closed:
                out.abort()
            self._connections.discard(task)


class _Connection:
    def __init__(self, server: AudioSocketServer, reader: asyncio.StreamReader,
                 out: FrameWriter) -> None:
        self.server = server
        self.reader = reader
        self.out = out

    async def read(self) -> ac.Message:
        """One frame; EOFError when the peer closed (between frames or inside one)."""
        try:
            header = await self.reader.readexactly(ac.HEADER_BYTES)
            kind, length = ac.parse_header(header)
            payload = await self.reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ProtocolError("the connection closed inside a frame",
                                    ac.PROTOCOL_ERROR_CODE) from None
            raise EOFError from None
        except ConnectionError:
            raise EOFError from None
        return ac.parse_payload(kind, payload)

    async def run(self) -> None:
        s = self.server.settings
        try:
            first = await asyncio.wait_for(self.read(), s.idle_timeout_s)
        except TimeoutError:
            raise ProtocolError(f"no UUID frame within {s.idle_timeout_s:g} s",
                                ac.PROTOCOL_ERROR_CODE) from None
        except EOFError:
            return
        if not isinstance(first, ac.CallUuid):
            raise ProtocolError("the first frame must be the call's UUID", ac.PROTOCOL_ERROR_CODE)
        self.out.label = f"call {first.value}"
        if not self.server.registry.ready:
            log.warning("audiosocket %s: still starting up; the dialplan sends the caller to "
                        "the human line", self.out.label)
            await self.out.hang_up()
            return
        known = await self._known(first.value)
        if known is None:
            await self._call(first.value)
        elif known.outcome == "handoff":
            await self._return_leg(known)
        else:
            raise ProtocolError("this UUID belongs to a call that is over", ac.PROTOCOL_ERROR_CODE)

    async def _known(self, call_id: str) -> CallRecord | None:
        if call_id in self.server.registry.sessions:
            raise ProtocolError("a call with this UUID is already in progress", ac.PROTOCOL_ERROR_CODE)
        return await self.server.line.record(call_id)

    async def _call(self, call_id: str) -> None:
        registry = self.server.registry
        channel = PacedChannel(self.out.send_audio, self.out.hang_up)
        record = CallRecord(call_id=call_id, gateway="audiosocket")
        try:
            session = registry.new_session(record, channel)
        except KeyError:
            raise ProtocolError("a call with this UUID is already in progress",
                                ac.PROTOCOL_ERROR_CODE) from None
        channel.on_played = session.on_mark
        call = start_call(registry, session)
        playout = asyncio.create_task(channel.run(), name=f"playout-{call_id}")
        reading = asyncio.create_task(self._read_call(session), name=f"audiosocket-{call_id}")
        try:
            await asyncio.wait({call, reading}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                reading.result()  # a ProtocolError ends the call here, logged by the server
        finally:
            reading.cancel()
            await finish_call(registry, session, call)
            playout.cancel()
            await asyncio.gather(reading, playout, return_exceptions=True)
            await self.out.close()

    async def _read_call(self, session: CallSession) -> None:
        """Feed the session until the caller hangs up (hangup or error frame, EOF)."""
        while True:
            try:
                message = await self.read()
            except EOFError:
                return
            if isinstance(message, ac.Audio):
                session.on_media(message.pcm, "pcm16")
            elif isinstance(message, ac.Dtmf):
                session.on_dtmf(message.digit)
            elif isinstance(message, ac.GatewayError):
                log.warning("audiosocket %s: Asterisk reported error %s; ending the call",
                            self.out.label, message.code)
                return
            elif isinstance(message, ac.Hangup):
                return
            else:
                raise ProtocolError("a second UUID frame", ac.PROTOCOL_ERROR_CODE)

    async def _return_leg(self, record: CallRecord) -> None:
        """The human line did not answer and the caller is still there: tell them a
        person will call back (the desk shows a call back), then hang up."""
        services = self.server.registry.services
        assert services is not None
        reply = await self.server.line.ended(record.call_id, False, True, RETURN_STATUS)
        log.info("audiosocket %s: back from the human line unanswered", self.out.label)
        samples = await services.prompts.get(services.flow.voice(reply.language), reply.say, ac.LINE_RATE)
        channel = PacedChannel(self.out.send_audio, self.out.hang_up)
        played = asyncio.get_running_loop().create_future()

        def on_played(name: str) -> None:
            if not played.done():
                played.set_result(name)

        channel.on_played = on_played
        playout = asyncio.create_task(channel.run(), name=f"return-{record.call_id}")
        reading = asyncio.create_task(self._drain_caller(), name=f"return-read-{record.call_id}")
        try:
            await channel.send_audio(samples)
            await channel.send_mark("human_unavailable")
            await asyncio.wait({played, reading}, return_when=asyncio.FIRST_COMPLETED)
            if played.done():
                await channel.end("callback")
        finally:
            for task in (playout, reading):
                task.cancel()
            await asyncio.gather(playout, reading, return_exceptions=True)
            await self.out.close()

    async def _drain_caller(self) -> None:
        """Read (and drop) the caller's audio until they hang up."""
        while not isinstance(await self.read(), ac.Hangup | ac.GatewayError):
            pass

