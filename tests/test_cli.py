"""`voicebot serve` as a real process, the way an operator starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen[str]:
    full_env = {**os.environ, "VOICEBOT_DB": str(kw.pop("db")), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "voicebot.cli", *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.engine
def test_serve_starts_on_defaults_reports_engine_and_stops_cleanly(tmp_path):
    port, audiosocket_port = free_port(), free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sip_port = s.getsockname()[1]
    proc = run_cli("serve", "--port", str(port), "--audiosocket-port", str(audiosocket_port),
                   "--sip-port", str(sip_port), db=tmp_path / "calls.db")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("server never became healthy")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"listening on http://127.0.0.1:{port}" in output
    assert f"AudioSocket: listening on 127.0.0.1:{audiosocket_port}" in output
    assert f"SIP: listening on udp 127.0.0.1:{sip_port}" in output
    assert "speech engine (en): pocketsphinx" in output
    assert "vosk" in output.lower()  # tells how to get a Vosk English model
    assert "VOICEBOT_TWILIO_AUTH_TOKEN is not set" in output
    assert (tmp_path / "calls.db").exists()


def test_bad_config_fails_at_start_naming_the_key(tmp_path):
    proc = run_cli("serve", env={"VOICEBOT_NO_INPUT_TURNS": "zero"}, db=tmp_path / "x.db")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "no_input_turns" in output and "expected int" in output


def test_gateway_ports_are_checked_at_start(tmp_path):
    proc = run_cli("serve", "--port", "8080", "--audiosocket-port", "8080", db=tmp_path / "x.db")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "audiosocket_port" in output and "differ from port" in output
    proc = run_cli("serve", env={"VOICEBOT_AUDIOSOCKET_PORT": "70000"}, db=tmp_path / "x.db")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "audiosocket_port" in output
    proc = run_cli("serve", env={"VOICEBOT_SIP_RTP_PORTS": "20000"}, db=tmp_path / "x.db")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "sip_rtp_ports" in output and "10000-20000" in output


@pytest.mark.engine
def test_missing_model_directory_fails_at_start_naming_the_key(tmp_path):
    proc = run_cli("serve", "--port", str(free_port()), "--model", str(tmp_path / "nope"),
                   db=tmp_path / "x.db")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "VOICEBOT_MODEL" in output
