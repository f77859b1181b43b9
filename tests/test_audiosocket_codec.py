"""AudioSocket framing and paced playout, without a server: pure functions, a
controlled clock, a writer that never drains."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from voicebot.errors import ProtocolError
from voicebot.telephony import audiosocket_codec as ac
from voicebot.telephony.audiosocket_writer import FrameWriter
from voicebot.telephony.paced import FRAME_S, PacedChannel

UUID = "40325ec2-5efd-4bd3-805f-53576e581d13"


def parse(frame: bytes) -> ac.Message:
    kind, length = ac.parse_header(frame[: ac.HEADER_BYTES])
    payload = frame[ac.HEADER_BYTES :]
    assert len(payload) == length
    return ac.parse_payload(kind, payload)


def test_frames_round_trip():
    assert ac.hangup_frame() == b"\x00\x00\x00"
    assert ac.uuid_frame(UUID)[:3] == b"\x01\x00\x10"
    assert parse(ac.uuid_frame(UUID)) == ac.CallUuid(UUID)
    assert parse(ac.uuid_frame(UUID.upper())) == ac.CallUuid(UUID)  # one canonical call id
    assert parse(ac.dtmf_frame("#")) == ac.Dtmf("#")
    pcm = np.arange(160, dtype="<i2").tobytes()
    assert ac.audio_frame(pcm)[:3] == b"\x10\x01\x40"  # 320 bytes, big-endian length
    assert parse(ac.audio_frame(pcm)) == ac.Audio(pcm)
    assert parse(ac.hangup_frame()) == ac.Hangup()
    assert parse(ac.encode(ac.Kind.ERROR, b"\x02")) == ac.GatewayError(2)
    assert parse(ac.encode(ac.Kind.ERROR)) == ac.GatewayError(None)


@pytest.mark.parametrize(("header", "problem"), [
    (b"\x42\x00\x00", "unknown frame kind 0x42"),
    (b"\x02\x00\x06", "unknown frame kind 0x02"),  # the old DTMF-start proposal, never Asterisk's
    (b"\x10\xff\xff", "frame of 65535 bytes is over the limit of 8000"),
    (b"\x10\x1f\x41", "frame of 8001 bytes is over the limit"),
    (b"\x10\x00", "frame header must be 3 bytes"),
])
def test_bad_headers_are_refused_before_any_payload_is_read(header, problem):
    with pytest.raises(ProtocolError, match=problem) as caught:
        ac.parse_header(header)
    assert caught.value.code == ac.PROTOCOL_ERROR_CODE


@pytest.mark.parametrize(("kind", "payload", "problem"), [
    (ac.Kind.UUID, b"\x01" * 15, "UUID frame must carry 16 bytes"),
    (ac.Kind.DTMF, b"x", "DTMF frame must carry one of"),
    (ac.Kind.DTMF, b"12", "DTMF frame must carry one of"),
    (ac.Kind.DTMF, b"\xff", "DTMF frame must carry one of"),
    (ac.Kind.AUDIO, b"\x00" * 321, "odd number of bytes"),
])
def test_payloads_that_do_not_fit_their_kind_are_refused(kind, payload, problem):
    with pytest.raises(ProtocolError, match=problem):
        ac.parse_payload(kind, payload)


class FakeClock:
    """Time moves only when the playout sleeps; `at` runs a callback at a time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []
        self.actions: list[tuple[float, object]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        for due, action in list(self.actions):
            if due <= self.now:
                self.actions.remove((due, action))
                await action()  # type: ignore[operator]
        await asyncio.sleep(0)

    async def send(self, frame: bytes) -> bool:
        self.sent.append((round(self.now, 6), frame))
        return True


async def run_until(channel: PacedChannel, done: asyncio.Future) -> None:
    playout = asyncio.create_task(channel.run())
    await asyncio.wait_for(done, 5)
    playout.cancel()
    await asyncio.gather(playout, return_exceptions=True)


async def test_playout_sends_one_frame_every_20_ms_and_confirms_the_mark_after_the_last():
    fake = FakeClock()
    channel = PacedChannel(fake.send, asyncio.sleep, clock=fake.clock, sleep=fake.sleep)
    played: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
    channel.on_played = lambda name: played.set_result((name, fake.now))
    await channel.send_audio(np.ones(160 * 5 + 40, np.int16))  # 5 full frames and a part
    await channel.send_mark("1-disclosure")
    await run_until(channel, played)
    assert [t for t, _ in fake.sent] == pytest.approx([i * FRAME_S for i in range(6)])
    assert all(len(frame) == ac.FRAME_BYTES for _, frame in fake.sent)  # the last one padded
    assert played.result() == ("1-disclosure", pytest.approx(6 * FRAME_S))
    assert channel.confirmed_by == "playout" and channel.frames_played == 6


async def test_clear_stops_playout_at_the_frame_being_played():
    fake = FakeClock()
    channel = PacedChannel(fake.send, asyncio.sleep, clock=fake.clock, sleep=fake.sleep)
    echoed: list[str] = []
    channel.on_played = echoed.append
    await channel.send_audio(np.ones(160 * 50, np.int16))  # 1 s
    await channel.send_mark("2-menu")
    cleared = asyncio.get_running_loop().create_future()

    async def barge_in() -> None:  # the caller speaks while frame 3 (0.04-0.06 s) plays
        await channel.send_clear()
        cleared.set_result(fake.now)

    fake.actions.append((0.05, barge_in))
    await run_until(channel, cleared)
    assert [t for t, _ in fake.sent] == pytest.approx([0.0, 0.02, 0.04])
    assert channel.frames_played == 3 and channel.frames_dropped == 47
    assert echoed == []  # the cut prompt's mark is not confirmed: the player reports it interrupted


async def test_a_stalled_loop_restarts_the_clock_instead_of_sending_a_burst():
    fake = FakeClock()
    channel = PacedChannel(fake.send, asyncio.sleep, clock=fake.clock, sleep=fake.sleep)
    played = asyncio.get_running_loop().create_future()
    channel.on_played = lambda name: played.set_result(name)
    await channel.send_audio(np.ones(160 * 4, np.int16))
    await channel.send_mark("m")

    async def stall() -> None:
        fake.now += 1.0  # the event loop was blocked for a second

    fake.actions.append((0.02, stall))
    await run_until(channel, played)
    times = [t for t, _ in fake.sent]
    assert times == pytest.approx([0.0, 1.02, 1.04, 1.06])


class NeverDrains:
    """A StreamWriter whose peer never reads (half-open TCP)."""

    def __init__(self) -> None:
        self.aborted = False
        self.transport = self

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        await asyncio.Event().wait()

    def abort(self) -> None:
        self.aborted = True


async def test_a_peer_that_stops_reading_is_cut_off_with_a_log_line(caplog):
    writer = NeverDrains()
    out = FrameWriter(writer, 0.05, "call x")  # type: ignore[arg-type]
    assert await out.send(ac.hangup_frame()) is False
    assert writer.aborted and out.closed
    assert "has not read for 0.05 s (half-open TCP?): closing" in caplog.text
    assert await out.send(ac.hangup_frame()) is False  # nothing more is written


def test_uuid_frame_refuses_a_non_uuid():
    with pytest.raises(ValueError):
        ac.uuid_frame("not-a-uuid")
    assert str(uuid.UUID(bytes=ac.uuid_frame(UUID)[3:])) == UUID
