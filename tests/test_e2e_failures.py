"""When something breaks, the caller reaches a human, never silence. Engine failures
during a call: tests/test_handoff_latency.py (end to end) and tests/test_call_session.py."""

from __future__ import annotations

import pytest

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
