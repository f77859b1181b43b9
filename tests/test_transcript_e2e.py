"""End to end: a real caller whose words the decision engine cannot follow is
handed over through the real server (the call placed by `voicebot replay`, as
an operator would); the free-form pass (real whisper tiny.en in its worker
process) puts what they said beside what the bot understood in the record,
`GET /api/calls/{id}`, the live desk feed and the CRM webhook, and `replay
--staff-token` reports its word error rate."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from voicebot.replay.suite import word_error_rate

from .conftest import FIXTURES, STAFF_TOKEN, manifest
from .test_replay_cli import run_cli, subset
from .test_staff_feed import BEARER, Receiver, next_event

pytestmark = [pytest.mark.e2e, pytest.mark.engine]
pytest.importorskip("faster_whisper", reason="needs the whisper extra")
CALLER = "real_out_of_domain_weasels.wav"


async def test_a_handed_over_call_carries_the_callers_own_words(start_server, en_engine, tmp_path):
    said = next(m for m in manifest() if m["file"] == CALLER)["text"]
    receiver = Receiver(failures=0)
    runner, url = await receiver.start()
    try:
        server = await start_server(
            en_engine, transcript_engine="whisper", transcript_model="whisper-tiny.en",
            transcript_calls="handoff", crm_webhook_url=url, crm_webhook_secret="crm-secret")
        async with aiohttp.ClientSession() as http, \
                http.get(server.http + "/api/feed", headers=BEARER) as feed:
            await next_event(feed, "ready")
            call = asyncio.create_task(run_cli(
                str(FIXTURES / CALLER), "--manifest", str(subset(tmp_path, [CALLER])),
                "--url", server.ws, "--speed", "2", "--staff-token", STAFF_TOKEN))
            transfer = (await asyncio.wait_for(next_event(feed, "transfer"), 60))["transfer"]
            notices = [await asyncio.wait_for(next_event(feed, "transcript"), 60) for _ in said]
            code, out, err = await call
        assert code == 0 and "outcome: handoff:low_confidence" in out, out + err
        call_id = transfer["call_id"]
        wer = re.search(r"free-form transcripts \(whisper whisper-tiny.en\): mean WER ([\d.]+) % "
                        r"over 1 of 1 calls; the bot's own words on the same calls: ([\d.]+) %", out)
        assert wer and float(wer[1]) <= 15.0 < float(wer[2]), out
        print(f"free-form transcripts on the desk {max(n['at'] for n in notices) - transfer['decided_at']:.2f} s "
              "after the handoff decision")
        assert {n["call_id"] for n in notices} == {call_id}
        assert all(set(n) == {"type", "call_id", "start", "status", "at"} for n in notices), \
            "the feed says a transcript is ready, not what it says"
        status, call_view = await server.api(f"/api/calls/{call_id}")
        assert status == 200
        understood = {round(u["start"], 3): u for u in call_view["utterances"]}
        free = call_view["transcripts"]
        assert [t["status"] for t in free] == ["ok", "ok"]
        for reference, t in zip(said, sorted(free, key=lambda t: t["start"]), strict=True):
            assert word_error_rate(reference, t["text"]) <= 0.15, (reference, t["text"])
            assert t["engine"] == "whisper" and t["model"] == "whisper-tiny.en" and t["words"]
            bot = understood[t["start"]]  # beside the decision engine's words for the same audio
            assert word_error_rate(reference, bot["text"]) > 0.5, "the grammar could not follow"
        record = await server.record(call_id)
        assert record.transcripts == free
        health = (await server.api("/healthz"))[1]["transcripts"]
        assert health["engine"].startswith("whisper whisper-tiny.en, 2 worker(s), calls: handoff")
        assert (health["ok"], health["queued"], health["skipped"]) == (2, 0, 0)

        for _ in range(200):  # the webhook is delivered in the background
            events = [json.loads(body) for _, body in receiver.requests]
            if sum(e["event"] == "transfer.transcript" for e in events) == len(said):
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    sent = [e for e in events if e["event"] == "transfer.transcript"]
    assert len(sent) == len(said) and all(e["call_id"] == call_id for e in sent)
    first = min(sent, key=lambda e: e["transcript"]["start"])
    assert first["transcript"]["text"] == min(free, key=lambda t: t["start"])["text"]
    assert first["understood"]["text"] == understood[first["transcript"]["start"]]["text"]
