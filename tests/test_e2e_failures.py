"""When something breaks during a call, the caller reaches a human, never silence."""

from __future__ import annotations

import time

import numpy as np
import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e


class BrokenEngine:
    """Wraps a real engine and breaks it the way engines break in production."""

    name = "broken"
    language = "en"
    sample_rate = 16000
    description = "broken test engine"

    def __init__(self, mode: str, hang_s: float = 30.0) -> None:
        self.mode = mode
        self.hang_s = hang_s

    def stream(self) -> BrokenEngine:
        if self.mode == "open":
            raise RuntimeError("model file vanished")
        return self

    def accept(self, pcm: bytes) -> None:
        if self.mode == "accept":
            raise MemoryError("decoder ran out of memory")

    def finish(self):
        if self.mode == "hang":
            time.sleep(self.hang_s)
        raise RuntimeError("decoder crashed")


@pytest.mark.parametrize("mode", ["open", "accept", "finish"])
async def test_engine_error_hands_off_with_system_error(start_server, mode):
    server = await start_server(BrokenEngine(mode))
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(marks="immediate", speed=0, max_call_s=30))
    assert result.outcome == "handoff:system_error"
    prompts = [e["name"] for e in result.of("prompt")]
    # At speed 0 the disclosure's echo can beat the failure from the engine's
    # thread, and then the menu starts before the handoff: both orders are right.
    assert prompts in (["disclosure", "handoff"], ["disclosure", "menu", "handoff"])
    record = await server.record(result.call_id)
    assert record.handoff_reason == "system_error"


async def test_hanging_engine_hands_off_within_the_timeout(start_server):
    server = await start_server(BrokenEngine("hang", hang_s=20), asr_timeout_s=1.0)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    samples = np.concatenate((np.zeros(rate * 7, np.int16), samples))  # speak after the disclosure
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(marks="played", speed=1, max_call_s=30))
    assert result.outcome == "handoff:system_error"
    handoff_prompt = next(e for e in result.of("prompt") if e["name"] == "handoff")
    speech_end = 7 + 2.75
    # hangover (0.5 s) + engine timeout (1 s) + scheduling: well under 3 s after the caller stopped
    assert handoff_prompt["t"] - speech_end < 3.0


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
    watchdog (1 s here) can give this call to a person with `system_error`."""
    import asyncio
    import os
    import signal

    from voicebot.asr.workers import WorkerPoolEngine
    from voicebot.dialog.compile import default_vocabulary

    pool = WorkerPoolEngine(None, default_vocabulary("en"), workers=1, hang_after_s=1.0)
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
