"""How long a caller waits for a human when the recogniser breaks: measured
from the moment the caller's utterance has been sent to the `handoff` event,
with the default settings (VOICEBOT_ASR_TIMEOUT_S=5)."""

from __future__ import annotations

import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES

pytestmark = pytest.mark.e2e

CASES = {
    "raises in finish": lambda: FakeEngine(error=RuntimeError("decoder crashed")),
    "raises in accept": lambda: FakeEngine(error=MemoryError("out of memory"), fail_in="accept"),
    "raises opening a stream": lambda: FakeEngine(error=OSError("model gone"), fail_in="stream"),
    "hangs": lambda: FakeEngine(delay_s=60),
}


async def person_request(start_server, engine: FakeEngine):
    """A caller asks for a person; the recording goes out at once, and speech ends
    (hangover included) at ~3.3 s of audio."""
    server = await start_server(engine)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    try:
        result = await replay(server.ws + "/v1/stream", samples, rate,
                              ReplayOptions(marks="immediate", speed=0, max_call_s=30))
    finally:
        engine.release()
    return server, result


@pytest.mark.parametrize("case", CASES)
async def test_engine_failure_reaches_a_human_within_a_bound(start_server, case):
    server, result = await person_request(start_server, CASES[case]())
    timeout = server.settings.asr_timeout_s
    handoff = result.of("handoff")[0]
    print(f"\nengine {case}: handoff after {handoff['t']:.2f} s (asr timeout {timeout:g} s)")
    assert result.outcome == "handoff:system_error"
    assert [e["name"] for e in result.of("prompt")][-1] == "handoff"
    if case == "hangs":
        assert handoff["t"] >= timeout  # it waited for the engine, as configured


class _BrokenResampler:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def process(self, samples, last=False):
        raise ValueError("resampler state corrupted")


async def test_failure_while_handling_speech_reaches_a_human(start_server, monkeypatch):
    """An exception on the audio path (here the speech resampler, called from the
    frame batcher) hands the call over instead of leaving the caller in silence."""
    monkeypatch.setattr("voicebot.call.listening.StreamResampler", _BrokenResampler)
    _, result = await person_request(start_server, FakeEngine())
    assert result.outcome == "handoff:system_error"  # at once: tests/test_call_session.py
