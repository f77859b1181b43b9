"""`voicebot audit disclosure`: after real calls it reads 100 % and exits 0; a call
whose disclosure was not played, or only assumed played, is listed and the
command exits 1; `--since` limits the calls (real server, the real CLI)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from voicebot.app import REGISTRY
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.storage.base import CallRecord

from .conftest import FIXTURES
from .staff_helpers import KNOWLEDGE
from .test_privacy_keys import cli

pytestmark = pytest.mark.e2e


def audit(db, *args: str):
    return cli("audit", "disclosure", *args, env={"VOICEBOT_DB": str(db)})


async def test_disclosure_audit_after_real_calls(start_server, en_engine, tmp_path):
    db = tmp_path / "calls.db"
    assert audit(db).returncode == 2  # no database: said, not a 100 % of nothing
    server = await start_server(en_engine, db=str(db), knowledge_dir=KNOWLEDGE)
    samples, rate = read_wav(FIXTURES / "en_dtmf_zero.wav")
    for protocol in ("native", "twilio"):
        path = "/twilio/media" if protocol == "twilio" else "/v1/stream"
        done = await replay(server.ws + path, samples, rate, ReplayOptions(
            protocol=protocol, marks="immediate", speed=0, max_call_s=30, dtmf=[(1.0, "0")]))
        assert done.outcome == "handoff:caller_request"  # the audit below checks the disclosure
        for _ in range(200):  # the record is closed just after the gateway's side ends
            record = await server.record(done.call_id)
            if record is not None and record.ended_at is not None:
                break
            await asyncio.sleep(0.02)

    ok = audit(db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "played and confirmed: 2 of 2 calls (100.0 %)" in ok.stdout

    store = server.app[REGISTRY].services.store
    now = time.time()
    bad = {  # call id: what the record says
        "never-played": dict(outcome="handoff", handoff_reason="system_error"),
        "assumed": dict(outcome="completed", disclosure_played_at=now,
                        disclosure_confirmed_by="timer"),
        "old-never-played": dict(outcome="handoff", started_at=now - 400 * 86400),
        "left-during": dict(outcome="abandoned"),
        "still-running": dict(ended_at=None),
    }
    for call_id, values in bad.items():
        fields = {"started_at": now, "ended_at": now + 5, **values}
        await store.create(CallRecord(call_id, "native", disclosure_text="I'm a computer.",
                                      disclosure_started_at=now, **fields))
    await store.add_prompt("left-during", now, {"name": "disclosure", "text": "I'm a computer."})

    found = audit(db)
    assert found.returncode == 1
    assert "played and confirmed: 2 of 5 calls (40.0 %)" in found.stdout
    assert "1 left during the disclosure, 1 in progress" in found.stdout
    listed = [line.split()[0] for line in found.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["old-never-played", "never-played", "assumed"]
    assert "not played, no confirmation" in found.stdout and "played, timer" in found.stdout

    today = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    recent = audit(db, "--since", today)
    assert "2 of 4 calls (50.0 %)" in recent.stdout and "old-never-played" not in recent.stdout
    assert audit(db, "--since", "yesterday").returncode == 2


async def test_the_audit_shows_recording_consent_and_its_answers(start_server, en_engine, tmp_path):
    db = tmp_path / "calls.db"
    server = await start_server(en_engine, db=str(db), knowledge_dir=KNOWLEDGE, recording="consent",
                                no_input_timeout_s=0.5)
    samples, rate = read_wav(FIXTURES / "silence.wav")
    for answer in ({"recording_consent": "1"}, {"recording_consent": "2"}, {}):
        done = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
            marks="immediate", speed=1, hangup_at=2.5, keys_after=answer))
        for _ in range(200):
            record = await server.record(done.call_id)
            if record is not None and record.ended_at is not None:
                break
            await asyncio.sleep(0.02)
    ok = audit(db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "played and confirmed: 3 of 3 calls (100.0 %)" in ok.stdout
    assert ("recording consent asked on 3 calls: 1 given, 1 refused, 1 no answer, "
            "0 left before answering") in ok.stdout
