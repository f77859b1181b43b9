"""The SIP endpoint against a third-party user agent, SIPp (Debian's
`sip-tester`), on loopback: an INVITE with a μ-law recording over RTP, the
bot's RTP recorded and compared with the disclosure it must start with, then
the REFER to a person with the call id, and the BYE."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.dialog.lang import PACKS
from voicebot.app import REGISTRY

from .conftest import FIXTURES

pytestmark = [
    pytest.mark.e2e, pytest.mark.engine,
    pytest.mark.skipif(shutil.which("sipp") is None,
                       reason="sipp is not installed (Debian: apt-get install sip-tester)"),
]
SCENARIO = Path(__file__).parent / "sip" / "caller_asks_for_a_person.xml"
HUMAN_LINE = "sip:agents@127.0.0.1"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtpCapture(asyncio.DatagramProtocol):
    """Where the caller's SDP points voicebot's RTP: keeps the PCMU payloads."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F == 0:
            self.payloads.append(data[12:])

    @property
    def audio(self) -> np.ndarray:
        return ulaw_decode(b"".join(self.payloads))


async def prompt(server, name: str) -> np.ndarray:
    services = server.app[REGISTRY].services
    samples = await services.prompts.get(services.pack.voice, PACKS["en"].prompts[name], 8000)
    return ulaw_decode(ulaw_encode(samples))


def matches(heard: np.ndarray, expected: np.ndarray) -> float:
    """Correlation of what came over RTP with the prompt, at the best alignment
    within the first 100 ms."""
    best = 0.0
    for lag in range(0, 800, 8):
        part = heard[lag : lag + expected.size].astype(float)
        if part.size < expected.size:
            break
        best = max(best, float(np.corrcoef(part, expected.astype(float))[0, 1]))
    return best


async def run_sipp(tmp_path: Path, sip_port: int, capture_port: int, notify_status: str) -> str:
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    audio = tmp_path / "caller.ulaw"
    audio.write_bytes(ulaw_encode(resample(samples, rate, 8000)))
    log = tmp_path / "messages.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{sip_port}", "-sf", str(SCENARIO), "-m", "1", "-nostdin",
        "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-key", "capture_port", str(capture_port),
        "-key", "notify_status", notify_status, "-timeout", "90s", "-timeout_error",
        "-trace_msg", "-message_file", str(log), "-trace_err", "-error_file", str(tmp_path / "err.log"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    messages = log.read_text(errors="replace") if log.exists() else ""
    errors = (tmp_path / "err.log").read_text(errors="replace") if (tmp_path / "err.log").exists() else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {stderr.decode()}\n{errors}\n{messages[-3000:]}"
    return messages


async def start(start_server, en_engine, tmp_path):
    sip_port = free_port()
    server = await start_server(en_engine, sip_port=sip_port, human_line=HUMAN_LINE,
                                sip_transfer_timeout_s=10.0)
    loop = asyncio.get_running_loop()
    capture = RtpCapture()
    transport, _ = await loop.create_datagram_endpoint(lambda: capture, local_addr=("127.0.0.1", 0))
    return server, sip_port, capture, transport


def call_id_in(messages: str) -> str:
    line = next(line for line in messages.splitlines() if line.startswith("X-Voicebot-Call-Id:"))
    return line.split(":", 1)[1].strip()


async def test_sipp_caller_hears_the_disclosure_and_is_transferred_with_the_call_id(
        start_server, en_engine, tmp_path):
    server, sip_port, capture, transport = await start(start_server, en_engine, tmp_path)
    try:
        messages = await run_sipp(tmp_path, sip_port, transport.get_extra_info("sockname")[1], "200 OK")
    finally:
        transport.close()
    disclosure = await prompt(server, "disclosure")
    assert matches(capture.audio, disclosure) > 0.95  # the first thing the caller hears
    call_id = call_id_in(messages)
    record = await server.record(call_id)
    assert (record.gateway, record.outcome, record.handoff_reason) == ("sip", "handoff", "caller_request")
    assert record.caller == "+15550123" and record.ended_at is not None
    assert record.handoff_target == HUMAN_LINE
    assert f"user-to-user: {call_id.encode().hex()};encoding=hex" in messages.lower()
    assert not server.app[REGISTRY].sessions


async def test_a_failed_transfer_takes_the_call_back_and_promises_a_call_back(
        start_server, en_engine, tmp_path):
    server, sip_port, capture, transport = await start(start_server, en_engine, tmp_path)
    try:
        messages = await run_sipp(tmp_path, sip_port, transport.get_extra_info("sockname")[1],
                                  "486 Busy Here")
    finally:
        transport.close()
    call_id = call_id_in(messages)
    said = await prompt(server, "human_unavailable")
    tail = capture.audio[-(said.size + 8000):]
    assert matches(tail, said) > 0.95  # the last thing the caller hears before our BYE
    for _ in range(100):
        status, body = await server.api("/api/transfers")
        rows = [t for t in body["transfers"] if t["call_id"] == call_id]
        if rows and rows[0]["status"] == "callback":
            break
        await asyncio.sleep(0.05)
    assert rows and rows[0]["status"] == "callback"
