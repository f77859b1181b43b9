"""When something breaks, the caller reaches a human, never silence. Engine failures
during a call: tests/test_handoff_latency.py (end to end) and tests/test_call_session.py."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from voicebot.asr.workers import WorkerPoolEngine
from voicebot.audio.wav import read_wav
from voicebot.dialog.compile import default_vocabulary
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e


class FailingSynth:
    """A synthesiser that cannot speak: the server must not claim to be ready."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def synthesize(self, text: str, voice: str):
        self.calls += 1
        raise RuntimeError("espeak-ng is not installed")


async def test_tts_failure_at_start_up_is_reported_not_served(start_server, en_engine):
    with pytest.raises(RuntimeError, match="espeak-ng is not installed"):
        await start_server(en_engine, synthesizer=FailingSynth())


async def test_a_recognition_worker_that_stops_answering_sends_the_call_to_a_person(start_server):
    """The worker is alive but frozen (SIGSTOP) while the caller talks. The
    recogniser's own timeout is 30 s, longer than the call: only the pool's
    watchdog (3 s here) can give this call to a person with `system_error`. The
    caller speaks from 1 s to about 3 s, so the utterance is open on the frozen
    worker when the watchdog kills it (with 1 s, the kill could come before the
    first word, and a fresh worker then heard the request)."""
    pool = WorkerPoolEngine(None, default_vocabulary("en"), workers=1, hang_after_s=3.0)
    try:
        server = await start_server(pool, asr_timeout_s=30.0)
        samples, rate = read_wav(FIXTURES / "en_human_person.wav")
        call = asyncio.ensure_future(replay(server.ws + "/v1/stream", samples, rate,
                                            ReplayOptions(hangup_at=25.0, max_call_s=30)))
        os.kill(pool.pids[0], signal.SIGSTOP)  # before the caller's first word (at 1 s)
        result = await call
        assert result.outcome == "handoff:system_error"
        assert pool.hung == 1
    finally:
        pool.close()
