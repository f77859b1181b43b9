"""Writing AudioSocket frames to one TCP connection, with a bound on how long
a peer may leave them unread. Asterisk writes each audio frame straight to the
caller's channel with no buffer of its own, so the audio comes from a
`PacedChannel` (paced.py) at real time."""

from __future__ import annotations

import asyncio
import logging

from voicebot.telephony.audiosocket_codec import FRAME_BYTES, audio_frame, hangup_frame

log = logging.getLogger(__name__)


class FrameWriter:
    """Writes frames to one socket; a peer that stops reading for `timeout_s`
    (half-open TCP, a hung gateway) or a broken connection aborts the socket."""

    def __init__(self, writer: asyncio.StreamWriter, timeout_s: float, label: str) -> None:
        self._writer = writer
        self._timeout_s = timeout_s
        self.label = label
        self.closed = False
        writer.transport.set_write_buffer_limits(high=FRAME_BYTES * 50)  # 1 s of audio

    async def send(self, frame: bytes) -> bool:
        if self.closed:
            return False
        try:
            self._writer.write(frame)
            await asyncio.wait_for(self._writer.drain(), self._timeout_s)
            return True
        except TimeoutError:
            log.warning("audiosocket %s: the peer has not read for %g s (half-open TCP?): closing",
                        self.label, self._timeout_s)
        except (ConnectionError, RuntimeError) as exc:
            log.info("audiosocket %s: connection lost while sending (%s)", self.label,
                     type(exc).__name__)
        self.abort()
        return False

    async def send_audio(self, pcm: bytes) -> bool:
        return await self.send(audio_frame(pcm))

    async def hang_up(self, reason: str = "") -> None:
        """Send the hangup frame (AudioSocket() then returns to the dialplan) and close."""
        if await self.send(hangup_frame()):
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), self._timeout_s)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._writer.transport.abort()

    def abort(self) -> None:
        self.closed = True
        self._writer.transport.abort()
