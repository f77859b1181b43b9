"""Every fixture in audio_fixtures/manifest.json, replayed at real-time pace
through the real server and the real engine for its language, all calls at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, ReplayResult, replay

from .conftest import FIXTURES, manifest

pytestmark = [pytest.mark.e2e, pytest.mark.engine, pytest.mark.slow]


async def run_fixture(server, entry: dict[str, Any], protocol: str) -> ReplayResult:
    samples, rate = read_wav(FIXTURES / entry["file"])
    options = ReplayOptions(
        protocol=protocol, speed=1.0, marks="played", max_call_s=70,
        dtmf=[(d["at"], d["digit"]) for d in entry.get("dtmf", [])],
        hangup_at=entry.get("hangup_at"),
    )
    path = "/twilio/media" if protocol == "twilio" else "/v1/stream"
    return await replay(server.ws + path, samples, rate, options)


async def outcome_of(server, result: ReplayResult) -> str:
    record = await server.record(result.call_id)
    assert record is not None
    if record.outcome == "handoff":
        return f"handoff:{record.handoff_reason}"
    return record.outcome


@pytest.mark.parametrize("protocol", ["native", "twilio"])
@pytest.mark.parametrize("language", ["en", "ko"])
async def test_every_fixture_reaches_its_expected_outcome(
    start_server, request, language, protocol
):
    entries = [e for e in manifest() if e["language"] == language]
    engine = request.getfixturevalue(f"{language}_engine")
    server = await start_server(engine, language=language)
    results = await asyncio.gather(*(run_fixture(server, e, protocol) for e in entries))
    await asyncio.sleep(0.3)  # records of calls the client hung up on are closed by now
    rows, wrong = [], []
    for entry, result in zip(entries, results, strict=True):
        got = await outcome_of(server, result)
        record = await server.record(result.call_id)
        heard = " | ".join(f"{u['text']} ({u['confidence']:.2f})" for u in record.utterances)
        rows.append(f"{entry['file']:<36} expected {entry['expected']:<24} got {got:<24} heard: {heard}")
        if got != entry["expected"]:
            wrong.append(rows[-1])
        assert record.disclosure_started_at is not None, "every call starts with the disclosure"
    print("\n" + "\n".join(rows))
    assert not wrong, "fixtures with the wrong outcome:\n" + "\n".join(wrong)
