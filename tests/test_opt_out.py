"""Opting out of the automated assistant: a caller who refuses the machine is
handed over at once, and their next call goes to a person right after the
disclosure; an admin withdraws it on request. Real server, real pocketsphinx."""

from __future__ import annotations

import asyncio
import json

import pytest

from voicebot.app import REGISTRY
from voicebot.audio.wav import read_wav
from voicebot.privacy.optout import says_opt_out
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES
from .staff_helpers import KNOWLEDGE, make_staff

pytestmark = pytest.mark.e2e
REFUSER, SOMEONE = "+15550161", "+15550162"


async def _call(server, fixture: str, caller: str):
    """A call; "en_dtmf_zero.wav" presses 0 (a person, not an opt-out) a second in."""
    samples, rate = read_wav(FIXTURES / fixture)
    dtmf = [(1.0, "0")] if fixture == "en_dtmf_zero.wav" else []
    return await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        caller=caller, marks="immediate", speed=0, max_call_s=30, dtmf=dtmf))


async def _opted_out(admin, caller: str) -> bool:
    status, body = await admin.post("/api/privacy/opt-out", {"caller": caller})
    assert status == 200
    return body["opted_out"]


async def test_refusing_the_machine_is_remembered_until_withdrawn(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    admin = staff["ada"]
    first = await _call(server, "en_human_robot.wav", REFUSER)  # "i don't want to talk to a robot"
    assert first.outcome == "handoff:caller_request"
    for _ in range(200):
        if await _opted_out(admin, REFUSER):
            break
        await asyncio.sleep(0.02)
    assert await _opted_out(admin, "+1 555 0161")  # any spelling of the number

    again = await _call(server, "en_dtmf_zero.wav", REFUSER)
    assert again.outcome == "handoff:opted_out"
    assert [e["name"] for e in again.of("prompt")] == ["disclosure", "handoff"]
    assert (await _call(server, "en_dtmf_zero.wav", SOMEONE)).outcome == "handoff:caller_request"

    assert (await staff["sue"].post("/api/privacy/opt-out", {"caller": REFUSER,
                                                            "opted_out": False}))[0] == 403
    assert (await admin.post("/api/privacy/opt-out", {"caller": REFUSER,
                                                      "opted_out": "no"}))[0] == 400
    status, body = await admin.post("/api/privacy/opt-out", {"caller": REFUSER,
                                                             "opted_out": False})
    assert body == {"opted_out": False, "changed": True}
    assert (await _call(server, "en_dtmf_zero.wav", REFUSER)).outcome == "handoff:caller_request"

    metrics = server.app[REGISTRY].metrics
    assert metrics.sample("voicebot_opt_outs_total", event="recorded") == 1
    assert metrics.sample("voicebot_opt_outs_total", event="withdrawn") == 1
    assert metrics.sample("voicebot_handoffs_total", reason="opted_out") == 1
    status, audit = await admin.get("/api/staff/audit")
    actions = [row["action"] for row in audit["audit"]]
    assert "opt_out_recorded" in actions and "opt_out_withdrawn" in actions
    assert "5550161" not in json.dumps(audit)


async def test_an_erased_caller_leaves_no_opt_out(start_server):
    from voicebot.asr.fake import FakeEngine

    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    admin = (await make_staff(server.http))["ada"]
    await admin.post("/api/privacy/opt-out", {"caller": REFUSER, "opted_out": True})
    assert await _opted_out(admin, REFUSER)
    assert (await admin.post("/api/privacy/erase", {"caller": REFUSER}))[0] == 200
    assert not await _opted_out(admin, REFUSER)


@pytest.mark.parametrize(("text", "language", "opt_out"), [
    ("i don't want to talk to a robot", "en", True),
    ("let me speak to a real person", "en", True),
    ("i want to talk to someone real", "en", True),
    ("no robots please", "en", True),
    ("my computer is broken agent please", "en", False),
    ("the washing machine leaks i want a person", "en", False),
    ("agent please", "en", False),
    ("i want to speak to a person", "en", False),
    ("로봇 말고 사람이랑 통화하고 싶어요", "ko", True),
    ("상담원 연결해 주세요", "ko", False),
])
def test_which_requests_for_a_person_are_opt_outs(text, language, opt_out):
    assert says_opt_out(text, language) is opt_out


DISCLOSURE = ("You've reached our automated assistant. I'm a computer, not a person. "
              "Press 9 to always speak to a person.")


async def test_the_opt_out_key_named_in_the_disclosure(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, opt_out_key="9",
                                disclosure_text=DISCLOSURE)
    admin = (await make_staff(server.http))["ada"]
    samples, rate = read_wav(FIXTURES / "silence.wav")
    pressed = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        caller=REFUSER, marks="immediate", speed=0, max_call_s=30, dtmf=[(0.5, "9")]))
    assert pressed.outcome == "handoff:opted_out"  # at once, not after the silence reprompts
    names = [e["name"] for e in pressed.of("prompt")]
    assert names[0] == "disclosure" and names[-1] == "handoff" and "no_input" not in names
    for _ in range(200):
        if await _opted_out(admin, REFUSER):
            break
        await asyncio.sleep(0.02)
    again = await _call(server, "en_dtmf_zero.wav", REFUSER)
    assert again.outcome == "handoff:opted_out"
    assert [e["name"] for e in again.of("prompt")] == ["disclosure", "handoff"]
    metrics = server.app[REGISTRY].metrics
    assert metrics.sample("voicebot_opt_outs_total", event="recorded") == 1
    for _ in range(200):  # counted when the session ends, just after the caller's side
        if metrics.sample("voicebot_handoffs_total", reason="opted_out") == 2:
            break
        await asyncio.sleep(0.02)
    assert metrics.sample("voicebot_handoffs_total", reason="opted_out") == 2


def test_the_opt_out_key_must_be_named_in_the_disclosure():
    from voicebot.config import Settings
    from voicebot.errors import ConfigError

    assert Settings().opt_out_key == "9"  # the built-in disclosure names it
    with pytest.raises(ConfigError, match="name the key"):
        Settings(disclosure_text="You've reached our automated assistant.")  # a text of one's own
    with pytest.raises(ConfigError, match="one DTMF key"):
        Settings(opt_out_key="0", disclosure_text="Press 0 for a person.")
    assert Settings(opt_out_key="9", disclosure_text=DISCLOSURE).opt_out_key == "9"
    assert Settings(opt_out_key="", disclosure_text="I'm a computer.").opt_out_key == ""


@pytest.mark.parametrize(("language", "named"), [("en", "Press 9 to always speak to a person."),
                                                 ("ko", "항상 상담원과 통화하시려면 9번을 누르세요.")])
def test_every_built_in_disclosure_names_the_key_unless_there_is_none(language, named):
    from voicebot.dialog.flow import DEFAULT_FLOW
    from voicebot.dialog.flowcheck import load_checked

    flow = load_checked(DEFAULT_FLOW)
    assert language in flow.languages
    with_key = flow.disclosure(language, "9")
    assert with_key.startswith(flow.prompt("disclosure", language)) and with_key.endswith(named)
    assert "9" not in flow.disclosure(language, "")
    assert flow.disclosure(language, "#").endswith(named.replace("9", "#"))


async def _press_after_disclosure(server, caller: str):
    samples, rate = read_wav(FIXTURES / "silence.wav")
    options = ReplayOptions(caller=caller, marks="immediate", speed=0, max_call_s=30,
                            keys_after={"disclosure": "9"})
    return await replay(server.ws + "/v1/stream", samples, rate, options)


async def test_the_key_the_built_in_disclosure_names_reaches_a_person_and_is_remembered(
        start_server, en_engine):
    """Out of the box (no disclosure text, no key configured): the disclosure says
    "Press 9 ...", 9 pressed once it has played reaches a person as an opt-out, and
    the caller's next call goes to a person right after the disclosure."""
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    admin = (await make_staff(server.http))["ada"]
    pressed = await _press_after_disclosure(server, REFUSER)
    prompts = pressed.of("prompt")
    assert prompts[0]["name"] == "disclosure" and "Press 9 to always speak to a person." in prompts[0]["text"]
    assert pressed.marks_echoed[0] == "1-disclosure"  # the key came after the disclosure played
    assert pressed.outcome == "handoff:opted_out" and prompts[-1]["name"] == "handoff"
    handed = pressed.of("handoff")[0]  # what the gateway and the person taking the call get
    assert handed["reason"] == "opted_out" and "opted out of the automated assistant" in handed["summary"]
    assert "no_input" not in [p["name"] for p in prompts]
    record = await server.record(pressed.call_id)
    assert record.handoff_reason == "opted_out" and "Press 9" in record.disclosure_text
    assert [u["text"] for u in record.utterances] == ["9"]
    for _ in range(200):
        if await _opted_out(admin, REFUSER):
            break
        await asyncio.sleep(0.02)
    again = await _call(server, "en_human_person.wav", REFUSER)  # asks for a person: not needed
    assert again.outcome == "handoff:opted_out"
    assert [e["name"] for e in again.of("prompt")] == ["disclosure", "handoff"]
    assert (await _call(server, "silence.wav", SOMEONE)).outcome == "handoff:no_input"


async def test_the_korean_disclosure_names_the_key_too(start_server):
    from voicebot.asr.fake import FakeEngine

    server = await start_server(FakeEngine(language="ko"), language="ko", knowledge_dir=KNOWLEDGE)
    pressed = await _press_after_disclosure(server, REFUSER)
    said = pressed.of("prompt")[0]
    assert said["name"] == "disclosure" and "9번을 누르세요" in said["text"]
    assert pressed.outcome == "handoff:opted_out"
