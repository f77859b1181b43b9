"""The Quick start's server: `scripts/setup` installs no Whisper extra, so neither
faster-whisper, CTranslate2 nor tokenizers is there. The server must still start on
its embedded defaults and answer a call (session 35's sentence encoder imported
tokenizers at the top of a module every call imports, and the plain server did not
start)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES, ROOT
from .servers import free_port, healthz_once_up

NOT_INSTALLED = ("faster_whisper", "ctranslate2", "tokenizers")  # the whisper extra's


def without_whisper_extra(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python (the server's and its workers') cannot import the extra."""
    shadow = tmp_path / "not_installed"
    shadow.mkdir()
    for name in NOT_INSTALLED:
        (shadow / f"{name}.py").write_text(f"raise ImportError('No module named {name!r} (test)')\n")
    path = os.pathsep.join([str(shadow), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "VOICEBOT_DB": str(tmp_path / "calls.db")}


@pytest.mark.e2e
@pytest.mark.engine
def test_the_plain_install_starts_and_puts_a_caller_through(tmp_path: Path):
    env = without_whisper_extra(tmp_path)
    check = subprocess.run([sys.executable, "-c", "import tokenizers"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "(test)" in check.stderr  # the shadow stands in for "not installed"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = healthz_once_up(proc, port, timeout=90)
        if health is None:
            proc.kill()
            pytest.fail(f"server never became healthy: {proc.communicate(timeout=30)[0][-3000:]}")
        assert (health["engine"], health["second_opinion"]) == ("pocketsphinx", "off"), health
        samples, rate = read_wav(FIXTURES / "en_human_person.wav")
        result = asyncio.run(replay(f"ws://127.0.0.1:{port}/v1/stream", samples, rate,
                                    ReplayOptions(max_call_s=30, caller="+15550199")))
        assert result.outcome == "handoff:caller_request", result.outcome
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output[-3000:]
