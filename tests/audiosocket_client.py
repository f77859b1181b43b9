"""The tests' AudioSocket peer, behaving like Asterisk's `AudioSocket()`: sends the
call's UUID, then the caller's audio in 20 ms frames of 8 kHz PCM16 at
real-time pace (silence once the recording ends), DTMF and a hang-up on cue,
and records every frame the bot sends with the time it arrived. The call is
over when the bot sends a hangup frame, either side closes, or `max_call_s`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from voicebot.telephony import audiosocket_codec as ac

FRAME_S = ac.FRAME_BYTES / 2 / ac.LINE_RATE


@dataclass
class AudioSocketOptions:
    call_id: str = ""  # a UUID; a new one when empty
    speed: float = 1.0  # 1 = real time; 0 = as fast as the socket takes it
    dtmf: list[tuple[float, str]] = field(default_factory=list)  # (seconds, digit)
    hangup_at: float | None = None  # seconds into the stream: send a hangup frame
    max_call_s: float = 60.0


@dataclass
class AudioSocketResult:
    call_id: str
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival s, PCM)
    bot_hung_up: bool = False  # the bot sent a hangup frame
    closed_by_bot: bool = False  # the socket closed from the bot's side

    @property
    def audio(self) -> np.ndarray:
        pcm = b"".join(data for _, data in self.frames)
        return np.frombuffer(pcm, "<i2").copy()

    def bursts(self, gap_s: float = 0.3) -> list[list[tuple[float, bytes]]]:
        """The bot's frames grouped into prompts: a pause over `gap_s` starts a new one."""
        out: list[list[tuple[float, bytes]]] = []
        for frame in self.frames:
            if not out or frame[0] - out[-1][-1][0] > gap_s:
                out.append([])
            out[-1].append(frame)
        return out


async def call(host: str, port: int, samples: np.ndarray, options: AudioSocketOptions) -> AudioSocketResult:
    """Play `samples` (int16 at 8 kHz) as one AudioSocket call."""
    result = AudioSocketResult(options.call_id or str(uuid.uuid4()))
    reader, writer = await asyncio.open_connection(host, port)
    t0 = time.monotonic()
    try:
        writer.write(ac.uuid_frame(result.call_id))
        receiving = asyncio.create_task(_receive(reader, result, t0))
        sending = asyncio.create_task(_send(writer, samples, options, receiving))
        await asyncio.wait({receiving, sending}, timeout=options.max_call_s + 10,
                           return_when=asyncio.FIRST_COMPLETED)
        if sending.done() and not receiving.done():  # we hung up: the bot closes its side
            await asyncio.wait({receiving}, timeout=10)
        for task in (sending, receiving):
            task.cancel()
        await asyncio.gather(sending, receiving, return_exceptions=True)
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return result


async def _send(writer: asyncio.StreamWriter, samples: np.ndarray, o: AudioSocketOptions,
                receiving: asyncio.Task[None]) -> None:
    step = ac.FRAME_BYTES // 2
    dtmf = sorted(o.dtmf)
    limit = o.hangup_at if o.hangup_at is not None else o.max_call_s
    due = time.monotonic()
    index = 0
    while index * FRAME_S < limit and not receiving.done():
        at = index * FRAME_S
        while dtmf and dtmf[0][0] <= at:
            writer.write(ac.dtmf_frame(dtmf.pop(0)[1]))
        frame = samples[index * step : (index + 1) * step]
        pcm = np.pad(frame, (0, step - frame.size)).astype("<i2").tobytes()
        writer.write(ac.audio_frame(pcm))
        await writer.drain()
        index += 1
        in_tail = index * step >= samples.size  # waiting on the line goes at real time
        pace = 1.0 if in_tail else o.speed
        if pace:
            due += FRAME_S / pace
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        else:
            due = time.monotonic()
    if o.hangup_at is not None and not receiving.done():
        writer.write(ac.hangup_frame())
        await writer.drain()


async def _receive(reader: asyncio.StreamReader, result: AudioSocketResult, t0: float) -> None:
    while True:
        try:
            header = await reader.readexactly(ac.HEADER_BYTES)
            kind, length = ac.parse_header(header, 0xFFFF)
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            result.closed_by_bot = True
            return
        if kind is ac.Kind.AUDIO:
            result.frames.append((time.monotonic() - t0, payload))
        elif kind is ac.Kind.HANGUP:
            result.bot_hung_up = True
