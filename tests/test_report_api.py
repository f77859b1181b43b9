"""The report on the supervisor desk and the fairness metric, through a real server."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.types import HandoffReason, Source, Transcript, Utterance

from .conftest import FIXTURES, STAFF_TOKEN
from .staff_helpers import make_staff, seed_call

pytestmark = pytest.mark.e2e
KNOWLEDGE = str(FIXTURES.parent / "knowledge")


def _said(text: str, confidence: float) -> list[Utterance]:
    return [Utterance(text, confidence, 1.0, 2.0, Source.SPEECH)]


async def _get(server, path: str, token: str = STAFF_TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(server.http + path, headers=headers) as r:
        return r.status, r.content_type, await r.text()


async def test_supervisor_report_flags_a_group_and_sets_the_metric(start_server):
    server = await start_server(FakeEngine(lambda audio: Transcript("agent please", 0.9)),
                                knowledge_dir=KNOWLEDGE)
    for i in range(5):
        await seed_call(server, f"en-{i}", _said("where is my order", 0.9), reason=None)
        await seed_call(server, f"ko-{i}", _said("네", 0.2), HandoffReason.LOW_CONFIDENCE,
                        language="ko")
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    twilio = await replay(server.ws + "/twilio/media", samples, rate, ReplayOptions(
        protocol="twilio", marks="immediate", speed=0, max_call_s=30, confirm="yes"))
    assert twilio.outcome == "handoff:caller_request"
    native = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        marks="immediate", speed=0, max_call_s=30, confirm="yes",
        labels={"plan": "basic", "Bad": "dropped"}))
    assert native.outcome == "handoff:caller_request"
    bad = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        marks="immediate", speed=0, max_call_s=30, labels={"plan": 5}))  # type: ignore[dict-item]
    assert bad.close_code == 1008 and "labels must be an object" in bad.close_reason

    await server.call_over()
    await server.stored()  # reports read the database itself
    for _ in range(200):  # the label writer runs on its own task
        status, _, body = await _get(server, "/api/reports/kpi?since=1d&min_group=5")
        if '"basic"' in body:
            break
        await asyncio.sleep(0.02)
    report = json.loads(body)
    assert status == 200 and report["kpis"]["calls"] == 12
    assert list(report["fairness"]["dimensions"]["plan"]) == ["basic"]  # Bad: not a label key
    assert "Bad" not in report["fairness"]["dimensions"]
    assert report["fairness"]["dimensions"]["line"]["narrowband"]["calls"] == 2  # both at 8 kHz
    flags = {(f["dimension"], f["group"], f["kpi"]) for f in report["fairness"]["flags"]}
    assert ("language", "ko", "containment") in flags and ("language", "ko", "understood") in flags

    async with aiohttp.ClientSession() as http, http.get(server.http + "/metrics") as r:
        metrics = await r.text()
    assert 'voicebot_fairness_flagged{dimension="language",group="ko",kpi="understood"} 1.0' in metrics
    assert 'voicebot_fairness_flagged{dimension="language",group="en",kpi="understood"} 0.0' in metrics

    status, kind, page = await _get(server, "/api/reports/kpi?since=1d&format=html")
    assert status == 200 and kind == "text/html" and "<svg" in page and "language = ko" in page


async def test_report_is_for_supervisors_and_checks_its_query(start_server):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    status, _ = await staff["ann"].get("/api/reports/kpi")
    assert status == 403
    status, _ = await staff["sue"].get("/api/reports/kpi?since=7d")
    assert status == 200
    for query in ("since=soon", "format=pdf", "since=1d&until=2d", "min_group=0", "since=100d"):
        status, _, _ = await _get(server, f"/api/reports/kpi?{query}")
        assert status == 400, query
    status, _, _ = await _get(server, "/api/reports/kpi", token="wrong")
    assert status == 401


async def test_supervisor_reviews_a_sample_of_completed_calls_and_marks_feed_accuracy(start_server):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    for i in range(4):
        await seed_call(server, f"done-{i}", _said("where is my order", 0.9), reason=None)
    await seed_call(server, "handed", _said("agent please", 0.9))
    status, sample = await staff["sue"].get("/api/review/sample?n=10")
    assert status == 200
    assert sorted(c["call_id"] for c in sample["calls"]) == [f"done-{i}" for i in range(4)]
    assert (await staff["ann"].get("/api/review/sample"))[0] == 403
    assert (await staff["sue"].get("/api/review/sample?n=0"))[0] == 400

    sue = staff["sue"]
    assert (await sue.post("/api/calls/done-0/feedback", {"kind": "reviewed_ok"}))[0] == 201
    assert (await sue.post("/api/calls/done-1/feedback", {
        "kind": "transcript_wrong", "utterance": 0, "correction": "where is my border"}))[0] == 201
    status, sample = await sue.get("/api/review/sample?n=10")
    assert sorted(c["call_id"] for c in sample["calls"]) == ["done-2", "done-3"]  # not twice

    status, _, body = await _get(server, "/api/reports/kpi?since=1d")
    kpis = json.loads(body)["kpis"]
    assert kpis["reviewed_calls"] == 2 and kpis["reviewed_turns"] == 2
    assert kpis["wer"] == 0.125  # 1 word wrong of the 8 reviewed
