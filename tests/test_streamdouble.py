"""Compatibility with a Twilio Media Streams simulator nobody on this team wrote
(`streamdouble` from PyPI), against the real server and the real English engine."""

from __future__ import annotations

import aiohttp
import pytest
from streamdouble.api import run_scenario
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

from voicebot.replay.client import ReplayOptions, twilio_webhook

from .conftest import FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


async def stream_parameters(server, caller: str = "+15550123") -> dict[str, str]:
    """The <Stream>'s <Parameter>s from /twilio/voice, as Twilio gets them. (streamdouble
    picks its own CallSid and cannot sign the upgrade, so these servers run without a
    Twilio auth token, where no stream token is required.)"""
    async with aiohttp.ClientSession() as http:
        parameters, _ = await twilio_webhook(http, server.ws + "/twilio/media",
                                             ReplayOptions(caller=caller), "CA-streamdouble")
    return parameters


async def test_streamdouble_caller_asks_for_an_agent_during_the_disclosure(start_server, en_engine):
    server = await start_server(en_engine)
    scenario = parse({
        "name": "agent during the disclosure",
        "steps": [
            {"wait_for": {"event": "audio", "timeout": 5}},
            {"say": str(FIXTURES / "en_human_person.wav")},
            {"wait_for": {"event": "mark", "timeout": 15}},
            {"wait": 10},
            {"expect": "audio"},
            {"expect": "mark"},
            {"expect": "no_violations"},
        ],
    })
    config = SessionConfig(custom_parameters=await stream_parameters(server, "+15550142"),
                           max_call_s=40)
    report = await run_scenario(server.ws + "/twilio/media", scenario, config=config)
    assert report.violations == []
    assert report.time_to_first_audio_ms is not None  # how soon: benchmarks/latency.py
    record = await server.record(report.result.identity.call_sid)
    assert record is not None and record.caller == "+15550142"
    assert record.disclosure_confirmed_by == "mark"
    assert record.outcome == "handoff" and record.handoff_reason == "caller_request"
    assert record.utterances[0]["text"] == "i want to speak to a person"


async def test_streamdouble_barge_in_gets_a_clear(start_server, en_engine):
    server = await start_server(en_engine)
    scenario = parse({
        "name": "talk over the menu",
        "steps": [
            {"wait_for": {"event": "mark", "timeout": 15}},  # the disclosure has played
            {"wait": 1.5},  # the menu prompt is playing now
            {"say": str(FIXTURES / "en_human_person.wav")},
            {"wait_for": {"event": "clear", "timeout": 5}},
            {"expect": "clear"},
            {"wait": 3},  # the bot hands off and closes the stream
        ],
    })
    report = await run_scenario(server.ws + "/twilio/media", scenario, config=SessionConfig(
        custom_parameters=await stream_parameters(server), max_call_s=40))
    assert report.violations == []
    assert not report.result.failed_expectations
    record = await server.record(report.result.identity.call_sid)
    assert next(p for p in record.prompts if p["name"] == "menu")["confirmed_by"] == "interrupted"
    # the request is put through at once, or (heard with middling confidence)
    # confirmed first: streamdouble's scenario cannot answer the question
    asked = [p["name"] for p in record.prompts]
    assert record.handoff_reason == "caller_request" or "confirm_human" in asked, asked
