"""The SIP endpoint against a third-party user agent, SIPp (Debian's
`sip-tester`) and baresip, on loopback. Five callers at once, each an INVITE with a
recording over RTP: the bot's RTP is recorded and must start with the
disclosure; a request for a person (spoken, or DTMF 0 as RFC 4733 events)
must bring a REFER to the human line carrying the call id; the transfer
either works (NOTIFY 200) or fails (NOTIFY 486), and then the caller hears
that a person will call back; the bot's BYE ends each call. The fourth
caller hangs up first, with its own BYE. A fifth is baresip with a WAV file as
its microphone: it follows the REFER to a human line that never answers, and
the bot takes the call back after the transfer timeout."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from aiortp.codecs.g711 import PcmaCodec, PcmuCodec

from voicebot.app import REGISTRY
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav, write_wav
from voicebot.dialog.lang import PACKS

from .conftest import FIXTURES, rtp_ports

pytestmark = [
    pytest.mark.e2e, pytest.mark.engine,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("baresip") is None,
                       reason="sipp and baresip are needed (Debian: sip-tester, baresip-core)"),
]
SCENARIOS = Path(__file__).parent / "sip"
HUMAN_LINE = "sip:agents@127.0.0.1:{}"  # a UDP port where no one answers


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindable(ports: range, kind: int) -> bool:
    """Whether every one of `ports` can be bound on 127.0.0.1 right now."""
    try:
        for port in ports:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def free_udp_and_tcp_port() -> int:
    """baresip listens for SIP on UDP and TCP at the port, and for TLS at the next one."""
    for _ in range(50):
        port = free_port()
        if bindable(range(port, port + 2), socket.SOCK_STREAM):
            return port
    raise RuntimeError("no port free for both UDP and TCP")


_MEDIA_GIVEN: set[int] = set()  # SIPp media blocks handed out in this test process


def free_media_port() -> int:
    """A port for SIPp's media (`-mp`): it binds that port and the three after it
    (audio and video, RTP and RTCP), so all four must be free, and no other caller
    started at the same time may be given any of them."""
    for _ in range(100):
        port = free_port() // 4 * 4
        if port not in _MEDIA_GIVEN and bindable(range(port, port + 4), socket.SOCK_DGRAM):
            _MEDIA_GIVEN.add(port)
            return port
    raise RuntimeError("no four UDP ports free in a row for SIPp's media")


class RtpCapture(asyncio.DatagramProtocol):
    """Where the caller's SDP points voicebot's RTP: keeps the audio payloads."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self.payloads: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F == self.payload_type:
            self.payloads.append(data[12:])

    @property
    def audio(self) -> np.ndarray:
        return np.frombuffer(CODECS[self.payload_type]().decode(b"".join(self.payloads)), "<i2")


CODECS = {0: PcmuCodec, 8: PcmaCodec}


async def prompt(server, name: str) -> np.ndarray:
    services = server.app[REGISTRY].services
    text = (services.flow.disclosure("en", services.settings.opt_out_key) if name == "disclosure"
            else PACKS["en"].prompts[name])  # the disclosure names the opt-out key
    samples = await services.prompts.get(services.flow.voice("en"), text, 8000)
    return samples


def find(heard: np.ndarray, expected: np.ndarray) -> tuple[int, float]:
    """Where `expected` best lines up in `heard` (FFT cross-correlation) and
    how well it matches there (correlation coefficient)."""
    h, e = heard.astype(float), expected.astype(float)
    size = 1 << int(np.ceil(np.log2(h.size + e.size)))
    xcorr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(e, size)), size)
    lag = int(np.argmax(xcorr[: max(1, h.size - e.size + 1)]))
    return lag, float(np.corrcoef(h[lag : lag + e.size], e)[0, 1])


def best_match(heard: np.ndarray, piece: np.ndarray) -> tuple[int, float]:
    """Where `piece` lines up best in `heard` by normalised correlation (which,
    unlike `find`'s raw one, a loud stretch next to a quiet piece cannot win)."""
    h, p = heard.astype(float), piece.astype(float) - piece.mean()
    size = 1 << int(np.ceil(np.log2(h.size + p.size)))
    dots = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(p, size)), size)[: h.size - p.size + 1]
    sums, squares = (np.concatenate([[0.0], np.cumsum(x)]) for x in (h, h * h))
    window_sum, window_squares = sums[p.size :] - sums[: -p.size], squares[p.size :] - squares[: -p.size]
    energy = np.sqrt(np.maximum(window_squares - window_sum**2 / p.size, 1e-9))
    scores = dots / (energy * np.linalg.norm(p))
    best = int(np.argmax(scores))
    return best, float(scores[best])


def heard_in(heard: np.ndarray, expected: np.ndarray, chunk: int = 2000) -> tuple[float, int]:
    """For audio that went through a real phone's jitter buffer (which may slip
    a few samples): the share of `expected`'s 0.25 s pieces found in `heard`
    (normalised correlation > 0.9), and where its last piece was found."""
    found, last = 0, -1
    pieces = [expected[i : i + chunk] for i in range(0, expected.size - chunk + 1, chunk)]
    for piece in pieces:
        if not piece.any():  # digital silence matches nothing
            found += 1
            continue
        lag, match = best_match(heard, piece)
        if match > 0.9:
            found, last = found + 1, lag
    return found / len(pieces), last


async def caller(workdir: Path, sip_port: int, fixture: str, *, payload_type: int = 0,
                 notify_status: str = "200 OK", dtmf: str = "",
                 scenario: str = "caller_asks_for_a_person.xml") -> tuple[RtpCapture, str]:
    """One SIPp call; returns what came back over RTP and SIPp's message log."""
    workdir.mkdir()
    samples, rate = read_wav(FIXTURES / fixture)
    pcm = resample(samples, rate, 8000).astype("<i2").tobytes()
    (workdir / "caller.raw").write_bytes(CODECS[payload_type]().encode(pcm))
    stream = f'<exec rtp_stream="caller.raw,1,{payload_type}"/>'
    text = (SCENARIOS / scenario).read_text().replace('<exec rtp_stream="caller.raw,1,0"/>', stream)
    if dtmf:  # RFC 4733 telephone-events, a second into the call
        text = text.replace(stream, stream + f"""
    </action>
  </nop>
  <pause milliseconds="1000"/>
  <nop>
    <action>
      <exec play_dtmf="{dtmf}"/>""")
    (workdir / "scenario.xml").write_text(text)
    capture = RtpCapture(payload_type)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: capture, local_addr=("127.0.0.1", 0))
    log, err = workdir / "messages.log", workdir / "errors.log"
    try:
        proc = await asyncio.create_subprocess_exec(
            "sipp", f"127.0.0.1:{sip_port}", "-sf", "scenario.xml", "-m", "1", "-nostdin",
            "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_media_port()),
            "-key", "capture_port", str(transport.get_extra_info("sockname")[1]),
            "-key", "codec", str(payload_type), "-key", "codec_name", "PCMU" if payload_type == 0 else "PCMA",
            "-key", "notify_status", notify_status, "-timeout", "90s", "-timeout_error",
            "-trace_msg", "-message_file", str(log), "-trace_err", "-error_file", str(err),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=workdir)
        _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        transport.close()
    messages = log.read_text(errors="replace") if log.exists() else ""
    errors = err.read_text(errors="replace") if err.exists() else ""
    assert proc.returncode == 0, f"sipp: {proc.returncode} {stderr.decode()}\n{errors}\n{messages[-3000:]}"
    return capture, messages


def header(messages: str, name: str) -> str:
    line = next(line for line in messages.splitlines() if line.startswith(f"{name}:"))
    return line.split(":", 1)[1].strip()


def call_id_in(messages: str) -> str:
    return header(messages, "X-Voicebot-Call-Id")


async def desk_status(server, call_id: str, wanted: str) -> str:
    for _ in range(100):  # the desk learns of it through the event bus
        status, body = await server.api("/api/transfers")
        rows = [t for t in body["transfers"] if t["call_id"] == call_id] if status == 200 else []
        if rows and rows[0]["status"] == wanted:
            break
        await asyncio.sleep(0.05)
    return rows[0]["status"] if rows else "missing"


async def test_sip_callers_hear_the_disclosure_and_are_transferred_or_called_back(
        start_server, en_engine, tmp_path):
    sip_port = free_port()
    server = await start_server(en_engine, sip_port=sip_port, human_line=HUMAN_LINE.format(free_port()),
                                sip_transfer_timeout_s=3.0, sip_rtp_ports=rtp_ports())
    (ok, ok_log), (busy, busy_log), (keyed, keyed_log), (_, gone_log), phone = await asyncio.gather(
        caller(tmp_path / "transferred", sip_port, "en_human_person.wav"),
        caller(tmp_path / "busy", sip_port, "en_human_person.wav", notify_status="486 Busy Here"),
        caller(tmp_path / "alaw_dtmf", sip_port, "en_dtmf_zero.wav", payload_type=8, dtmf="0"),
        caller(tmp_path / "hangs_up", sip_port, "en_hangup_mid_sentence.wav",
               scenario="caller_hangs_up.xml"),
        baresip_caller(tmp_path / "baresip", sip_port),
    )
    disclosure = await prompt(server, "disclosure")
    for capture in (ok, busy, keyed):
        lag, match = find(capture.audio, disclosure)
        assert match > 0.95 and lag == 0  # the first thing every caller hears

    for messages in (ok_log, busy_log, keyed_log):
        call_id = call_id_in(messages)
        record = await server.record(call_id)
        assert (record.gateway, record.outcome, record.handoff_reason) == ("sip", "handoff", "caller_request")
        assert record.caller == "+15550123" and record.ended_at is not None
        assert record.handoff_target == server.settings.human_line
        assert f"user-to-user: {call_id.encode().hex()};encoding=hex" in messages.lower()
    keyed_record = await server.record(call_id_in(keyed_log))
    assert keyed_record.utterances[0]["source"] == "dtmf" and keyed_record.utterances[0]["text"] == "0"

    # NOTIFY 486: the bot took the call back and told the caller, last, before its BYE
    said = await prompt(server, "human_unavailable")  # +15550123 can be called back
    heard = busy.audio
    lag, match = find(heard, said)
    assert match > 0.95 and heard.size - (lag + said.size) < 2 * 160
    assert await desk_status(server, call_id_in(busy_log), "callback") == "callback"
    assert find(ok.audio, said)[1] < 0.5  # a transfer that worked promises nothing

    # the caller's BYE: the record is closed with what they said
    record = await server.record(header(gone_log, "Call-ID"))
    assert record.outcome == "abandoned" and record.ended_at is not None
    assert record.utterances and record.utterances[0]["start"] < 2.5  # what they began to say

    # baresip followed the REFER to the human line, where no one answers: after
    # the transfer timeout the bot took the call back
    assert b"Call established" in phone and b"menu: transferring call" in phone
    call_id = re.search(rb"X-Voicebot-Call-Id=([0-9a-f]{32})", phone).group(1).decode()
    record = await server.record(call_id)  # baresip dialled the Refer-To URI with the call id
    assert (record.outcome, record.handoff_reason, record.caller) == ("handoff", "caller_request", "+15550123")
    assert await desk_status(server, call_id, "callback") == "callback", phone.decode(errors="replace")[-3000:]
    heard, _ = read_wav(next((tmp_path / "baresip" / "heard").glob("*-dec.wav")))
    share, _ = heard_in(heard[: disclosure.size + 4000], disclosure)
    assert share > 0.8  # what baresip played to its caller began with the disclosure
    share, last = heard_in(heard, said)
    assert share > 0.8 and last > heard.size // 2  # and ended with the call-back promise
    assert not server.app[REGISTRY].sessions


BARESIP_CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:{port}
audio_source aufile,{workdir}/caller.wav
audio_player aufile,{workdir}/unused.wav
audio_alert aufile,{workdir}/unused.wav
audio_srate 8000
audio_channels 1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app contact.so
snd_path {workdir}/heard
"""


async def baresip_caller(workdir: Path, sip_port: int) -> bytes:
    """baresip calls with a recording as its microphone (aufile) and dumps what it
    hears (sndfile); returns its console output once the bot has ended the call.
    (baresip reports the call "terminated" only when its own transfer attempt
    times out, 32 s later, so the test waits for the session to close instead.)"""
    workdir.mkdir()
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    speech = resample(samples, rate, 8000)  # then silence: baresip hangs up when the file ends
    write_wav(workdir / "caller.wav", np.concatenate([speech, np.zeros(8000 * 60, np.int16)]), 8000)
    (workdir / "heard").mkdir()
    (workdir / "accounts").write_text("<sip:+15550123@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    (workdir / "contacts").write_text("")
    for _ in range(5):  # another test process may take the port between our check and baresip's bind
        (workdir / "config").write_text(BARESIP_CONFIG.format(port=free_udp_and_tcp_port(), workdir=workdir))
        output = await _run_baresip(workdir, sip_port)
        if b"ua: init failed" not in output:
            return output
    return output


async def _run_baresip(workdir: Path, sip_port: int) -> bytes:
    proc = await asyncio.create_subprocess_exec(  # stdbuf: its console lines as they come
        "stdbuf", "-oL", "baresip", "-f", str(workdir), "-e", f"/dial sip:bot@127.0.0.1:{sip_port}", "-t", "120",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = b""
    try:  # our BYE closes baresip's call to the bot ("sip:bot@…: session closed")
        output = await asyncio.wait_for(_until(proc, rb"sip:bot@[0-9.]+:\d+: session closed|ua: init failed"), 90)
    finally:
        rest = await _stop(proc)
    return output + rest


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    """baresip closes its calls and audio dumps on SIGTERM, but waits for its own
    pending transfer to time out (32 s) unless told twice (a forced stop)."""
    reading = asyncio.ensure_future(proc.communicate())
    for _ in range(2):
        if proc.returncode is None:
            proc.terminate()
        done, _ = await asyncio.wait({reading}, timeout=1.0)
        if done:
            break
    try:
        rest, _ = await asyncio.wait_for(reading, 10)
    except TimeoutError:
        proc.kill()
        rest, _ = await reading
    return rest


async def _until(proc: asyncio.subprocess.Process, pattern: bytes) -> bytes:
    """baresip's console output until it matches `pattern`."""
    assert proc.stdout is not None
    seen = b""
    while not re.search(pattern, seen):
        chunk = await proc.stdout.read(4096)
        if not chunk:
            break
        seen += chunk
    return seen
