"""Property-based fuzzing of both wire protocols against one real server.

Hypothesis generates message sequences (tests/fuzz_messages.py); each is sent
over its own WebSocket to a real server with the real English engine, while
real calls run alongside. For every sequence the server must close the call
exactly as docs/protocol.md says (code, reason, native `error` event), close
nothing else, raise nothing, and keep its memory bounded.

The server runs on its own event-loop thread so that Hypothesis can drive the
examples synchronously (and shrink a failing one) while the server and the
healthy calls keep running in real time between examples.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings

from voicebot.app import REGISTRY, create_app
from voicebot.audio.wav import read_wav
from voicebot.config import Settings
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES
from .fuzz_messages import (
    CALL_ID,
    MAX_BYTES,
    Expect,
    Frame,
    native_expect,
    native_sequences,
    text,
    twilio_expect,
    twilio_sequences,
)

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

# per protocol; see the figures printed at the end. Derandomized, so every run sends
# the same examples: a deeper search is VOICEBOT_FUZZ_EXAMPLES=5000 (not in the suite)
EXAMPLES = int(os.environ.get("VOICEBOT_FUZZ_EXAMPLES", "300"))


@dataclass
class Tally:
    connections: int = 0
    sent: int = 0  # messages written to a socket
    handled: int = 0  # ... of which the server had to read (up to the one that ends the call)
    closed_by_error: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)


class ServerThread:
    """A real voicebot server on a background event loop; counts crashes: exceptions
    nobody handled (loop exception handler) and errors aiohttp or the call session
    had to catch as bugs."""

    def __init__(self, settings_: Settings, engine: Any, tally: Tally) -> None:
        self.tally = tally
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, ctx: tally.crashes.append(ctx["message"]))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(settings_, engine=engine)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.port = self.call(self._start())
        self.http: aiohttp.ClientSession = self.call(self._session())

    def call(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        while not self.app[REGISTRY].ready:
            await asyncio.sleep(0.05)
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def stop(self) -> None:
        self.call(self.http.close())
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class CrashLog(logging.Handler):
    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.ERROR)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith(("aiohttp", "asyncio")) or "internal error" in message:
            self.tally.crashes.append(f"{record.name}: {message}")


def live_objects() -> dict[str, int]:
    """Per-call objects still alive: must all be gone once the calls have ended.
    (Closed server sockets may linger until their cancelled 30 s heartbeat timer
    leaves the loop's heap, so only *open* ones count.)"""
    from voicebot.asr.runner import UtteranceRecognition
    from voicebot.call.player import Player
    from voicebot.call.session import CallSession

    gc.collect()
    kinds = (CallSession, Player, UtteranceRecognition, web.WebSocketResponse)
    counts = {kind.__name__: 0 for kind in kinds}
    for obj in gc.get_objects():
        if isinstance(obj, kinds) and not getattr(obj, "closed", False):
            counts[type(obj).__name__] += 1
    return counts


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


ids = itertools.count()


async def exchange(server: ServerThread, path: str, frames: list[Frame], expect: Expect) -> None:
    tally = server.tally
    call_id = f"fz-{next(ids)}"
    async with server.http.ws_connect(f"ws://127.0.0.1:{server.port}{path}", max_msg_size=0) as ws:
        tally.connections += 1
        for frame in frames:
            if ws.closed:
                break
            try:
                await _send(ws, frame, call_id)
            except ConnectionError:
                break
            tally.sent += 1
        tally.handled += len(frames) if expect.index is None else expect.index + 1
        if expect.index is None:  # nothing ends the call: the caller hangs up
            await ws.close()
            assert ws.close_code == 1000, (ws.close_code, frames)
            return
        events, code, reason = await _until_close(ws)
    assert code == expect.code, (code, reason, expect, frames[expect.index])
    errors = [e for e in events if e.get("event") == "error"]
    tally.codes[code] = tally.codes.get(code, 0) + 1
    if expect.stop:
        assert reason == "stopped" and not errors, (reason, errors)
        return
    tally.closed_by_error += 1
    assert bool(reason) == expect.reason, (code, reason, frames[expect.index])
    if path == "/v1/stream" and expect.reason:
        assert [e["reason"] for e in errors] == [reason], (errors, reason)
    else:
        assert not errors


async def _send(ws: aiohttp.ClientWebSocketResponse, frame: Frame, call_id: str) -> None:
    if frame.kind == "text":
        await ws.send_str(frame.data.replace(json.dumps(CALL_ID), json.dumps(call_id)))
    elif frame.kind == "binary":
        await ws.send_bytes(frame.data)
    else:
        await ws.send_frame(frame.data, aiohttp.WSMsgType.TEXT)


async def _until_close(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], int, str]:
    events: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            return events, msg.data, msg.extra or ""
        elif msg.type != aiohttp.WSMsgType.BINARY:
            return events, ws.close_code or 0, ""


async def healthy_calls(server: ServerThread, stop: asyncio.Event) -> list[tuple[str, str, list[str]]]:
    """Real callers asking for a person, back to back, for as long as the fuzzing runs."""
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    base = f"ws://127.0.0.1:{server.port}"
    outcomes = []
    for protocol in itertools.cycle(("native", "twilio")):
        path = "/v1/stream" if protocol == "native" else "/twilio/media"
        result = await replay(base + path, samples, rate, ReplayOptions(
            protocol=protocol, speed=1, marks="played", max_call_s=40))
        outcomes.append((protocol, result.outcome, result.marks_echoed))  # the marks: what the bot played
        if stop.is_set():
            return outcomes
    return outcomes


START = text({"event": "start", "call_id": CALL_ID, "sample_rate": 8000, "encoding": "pcm16"})
TW_START = text({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "callSid": CALL_ID}})
BAD_UTF8 = Frame("raw_text", b'{"event":"stop"\xc3}')
# every kind of trouble the issue names, always tried (Hypothesis adds its own on top)
NATIVE_CASES = [
    [Frame("text", "{not json")], [text([1, 2])], [text({"event": "dance"})],
    [Frame("binary", b"\x00" * 320)],  # audio before start / binary where text is expected
    [text({"event": "dtmf", "digit": "0"})],  # an event before start
    [START, Frame("binary", b"\x00\x01\x02")],  # odd-length PCM16
    [text({"event": "start", "sample_rate": 44100})], [text({"event": "start", "sample_rate": 8000.0})],
    [START, text({"event": "dtmf"})], [START, text({"event": "mark"})],  # missing fields
    [START, START], [START, text({"event": "stop"}), text({"event": "dtmf", "digit": "1"})],
    [START, Frame("binary", b"\x00" * (MAX_BYTES + 2))], [START, Frame("binary", b"\x00" * 3 * MAX_BYTES)],
    [BAD_UTF8], [START, BAD_UTF8], [Frame("text", "[" * 2000 + "]" * 2000)],
]
TWILIO_CASES = [
    [Frame("text", "{not json")], [Frame("binary", b"\xff" * 160)],
    [text({"event": "media", "media": {"payload": "AAAA"}})],  # media before start
    [TW_START, text({"event": "media", "media": {"payload": "!!!"}})],  # wrong base64
    [TW_START, text({"event": "media"})], [text({"event": "start", "start": {"callSid": "CA"}})],
    [text({"event": "start", "streamSid": "MZ", "start": {"callSid": "CA", "mediaFormat": {
        "encoding": "audio/x-mulaw", "sampleRate": 16000}}})],  # wrong sample rate
    [TW_START, TW_START], [TW_START, text({"event": "stop"}), text({"event": "stop"})],
    [TW_START, Frame("text", "x" * (MAX_BYTES + 1))], [TW_START, BAD_UTF8],
]


def _examples(cases: list[list[Frame]]) -> Any:
    def add(test: Any) -> Any:
        for case in reversed(cases):
            test = example(case)(test)
        return test
    return add


@pytest.fixture(scope="module")
def fuzz_server(en_engine, tmp_path_factory):
    tally = Tally()
    db = tmp_path_factory.mktemp("fuzz") / "calls.db"
    server = ServerThread(Settings(port=0, db=str(db), max_message_bytes=MAX_BYTES), en_engine, tally)
    handler = CrashLog(tally)
    logging.getLogger().addHandler(handler)
    yield server
    logging.getLogger().removeHandler(handler)
    server.stop()


def test_malformed_traffic_closes_only_its_own_call(fuzz_server):
    server = fuzz_server
    tally = server.tally
    fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])

    @fuzz_settings
    @given(native_sequences())
    @_examples(NATIVE_CASES)
    def native(frames: list[Frame]) -> None:
        server.call(exchange(server, "/v1/stream", frames, native_expect(frames)), 60)

    @fuzz_settings
    @given(twilio_sequences())
    @_examples(TWILIO_CASES)
    def twilio(frames: list[Frame]) -> None:
        server.call(exchange(server, "/twilio/media", frames, twilio_expect(frames)), 60)

    stop = asyncio.Event()
    healthy = asyncio.run_coroutine_threadsafe(healthy_calls(server, stop), server.loop)
    registry = server.app[REGISTRY]
    connected_by = time.monotonic() + 30
    while not registry.sessions:  # the first healthy call is connected before the fuzzing starts
        assert time.monotonic() < connected_by, "the healthy call never connected"
        time.sleep(0.02)
    tasks_before = len(asyncio.all_tasks(server.loop))
    rss_before, started = rss_mb(), time.monotonic()
    native()
    rss_half = rss_mb()
    twilio()
    elapsed = time.monotonic() - started
    server.loop.call_soon_threadsafe(stop.set)
    outcomes = healthy.result(90)
    deadline = time.monotonic() + 20
    while registry.sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    rss_after, tasks_after = rss_mb(), len(asyncio.all_tasks(server.loop))
    leftovers = live_objects()
    print(f"\nfuzz: {tally.sent} messages sent over {tally.connections} connections in "
          f"{elapsed:.1f} s ({tally.handled} read by the server), {tally.closed_by_error} "
          f"calls closed by an error, close codes {dict(sorted(tally.codes.items()))}; "
          f"crashes: {len(tally.crashes)}; healthy calls: {outcomes}; "
          f"RSS {rss_before:.0f} -> {rss_half:.0f} -> {rss_after:.0f} MB; event-loop tasks "
          f"{tasks_before} -> {tasks_after}; per-call objects left: {leftovers}")
    assert tally.crashes == []
    # the server read many messages of each example, not just its first (9,751-11,798 read at 300)
    assert tally.handled >= 8 * 2 * EXAMPLES
    assert outcomes and all(outcome == "handoff:caller_request" for _, outcome, _ in outcomes), outcomes
    assert not registry.sessions, "every fuzzed call ended and was cleaned up"
    assert set(leftovers.values()) == {0}, leftovers
    assert tasks_after <= tasks_before
    assert rss_after - rss_before < 100, "memory stays bounded"
