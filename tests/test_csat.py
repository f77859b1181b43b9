"""The optional post-call CSAT survey: only after a conversation the bot
completed, keys 1-5, skipped by silence, another key, speech or hanging up,
never on a transfer; stored with the call, counted in /metrics, reported."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from voicebot.audio.wav import read_wav
from voicebot.dialog import policy as p
from voicebot.dialog.flow import DEFAULT_FLOW, FlowError, load_flow
from voicebot.dialog.flowcheck import load_checked
from voicebot.dialog.lang import EN, KO, SYSTEM_PROMPTS
from voicebot.ops.abtest import compare
from voicebot.ops.calls import CallFacts, SqlCallSource
from voicebot.ops.fairness import fairness
from voicebot.ops.kpi import compute
from voicebot.ops.report import build_report, render
from voicebot.types import HandoffReason, Outcome, Utterance

from .call_client import Caller
from .conftest import FIXTURES

SURVEYED = "[flow]\ncsat_survey = true\ncsat_timeout_s = 1.5\n"


def surveyed_text() -> str:
    return DEFAULT_FLOW.read_text().replace("[flow]\n", SURVEYED, 1)


def surveyed_flow(tmp_path: Path) -> Path:
    path = tmp_path / "surveyed.toml"
    path.write_text(surveyed_text())
    return path


# --- the policy, event by event ---------------------------------------------------------
class Call:
    """Plays the policy as the session does, up to the end node's survey."""

    def __init__(self, flow, language: str = "en") -> None:
        self.policy = p.Policy(flow, language)
        self.actions: list[p.Action] = []
        self.do(self.policy.start())
        self.played()  # the disclosure
        self.played()  # the menu

    def do(self, actions: list[p.Action]) -> list[p.Action]:
        self.actions += actions
        return actions

    def send(self, event: p.Event) -> list[p.Action]:
        return self.do(self.policy.step(event))

    def played(self) -> list[p.Action]:
        return self.send(p.PromptDone(self.policy.current_prompt.prompt_id))

    def to_survey(self) -> p.Say:
        self.send(p.KeyPressed("1"))  # order status
        self.played()  # the answer
        self.played()  # "anything else?"
        actions = self.send(p.NoInput())  # silence there ends the call: the survey comes first
        assert actions[0] == p.Survey("offered")
        return actions[1]

    def says(self) -> list[str]:
        return [a.name for a in self.actions if isinstance(a, p.Say)]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    return load_checked(surveyed_flow(tmp_path_factory.mktemp("flow")))


def test_off_by_default_and_the_default_flow_keeps_it_off():
    plain = load_checked(DEFAULT_FLOW)
    assert not plain.csat_survey
    call = Call(plain)
    call.send(p.KeyPressed("1"))
    call.played()
    call.played()
    assert call.send(p.NoInput())[0].name == "goodbye"  # straight to goodbye, no survey
    assert call.policy.survey == ""


@pytest.mark.parametrize(("key", "status", "rating"), [
    ("5", "rated", 5), ("1", "rated", 1), ("3", "rated", 3),
    ("7", "other_key", None), ("#", "other_key", None)])
def test_keys_rate_or_skip_and_the_goodbye_follows(flow, key, status, rating):
    call = Call(flow)
    survey = call.to_survey()
    assert survey.name == "csat_survey" and survey.text == EN.prompts["csat_survey"]
    assert call.played() == [p.ExpectInput(1.5)]  # waits a few seconds for a key
    answer = call.send(p.KeyPressed(key))
    assert answer[0] == p.Survey(status, rating)
    assert isinstance(answer[1], p.Say) and answer[1].name == "goodbye"
    assert call.played() == [p.End(Outcome.COMPLETED)]


def test_a_key_during_the_question_counts_at_once(flow):
    call = Call(flow)
    call.to_survey()
    assert call.send(p.KeyPressed("4"))[0] == p.Survey("rated", 4)


def test_silence_skips_and_ends_the_call(flow):
    call = Call(flow)
    call.to_survey()
    call.played()
    assert call.send(p.NoInput())[0] == p.Survey("silence")
    assert call.played() == [p.End(Outcome.COMPLETED)]


def test_noise_keeps_waiting_speech_skips_and_a_person_is_still_reachable(flow):
    call = Call(flow)
    call.to_survey()
    call.played()
    assert call.send(p.Heard(Utterance("", 0.0, 0, 1))) == [p.ExpectInput(1.5)]  # noise
    skipped = call.send(p.Heard(Utterance("it was fine", 0.9, 0, 1)))
    assert skipped[0] == p.Survey("spoke")
    for event in (p.KeyPressed("0"), p.Heard(Utterance("i want to speak to a person", 0.97, 0, 1))):
        person = Call(flow)
        person.to_survey()
        actions = person.send(event)
        assert actions[0] == p.Survey("person") and actions[1].name == "handoff"
        assert person.policy.handoff_reason is HandoffReason.CALLER_REQUEST
    stopping = Call(flow)  # the service hands the call over (shutdown) during the survey
    stopping.to_survey()
    actions = stopping.send(p.HandOver(HandoffReason.SHUTDOWN))
    assert actions[0] == p.Survey("interrupted") and actions[1].name == "handoff"


def test_hanging_up_on_the_survey_still_completes_the_call(flow):
    call = Call(flow)
    assert call.policy.outcome_if_left() is Outcome.ABANDONED  # mid-conversation
    call.to_survey()
    assert call.policy.outcome_if_left() is Outcome.COMPLETED  # the bot's part is done


def test_transfers_are_never_surveyed(flow):
    call = Call(flow)
    call.send(p.KeyPressed("0"))
    call.played()
    assert "csat_survey" not in call.says() and call.policy.survey == ""
    assert isinstance(call.actions[-1], p.Handoff)


def test_korean_callers_are_asked_in_korean(flow):
    assert "csat_survey" in SYSTEM_PROMPTS and KO.prompts["csat_survey"] != EN.prompts["csat_survey"]
    call = Call(flow, "ko")
    assert call.to_survey().text == KO.prompts["csat_survey"]


@pytest.mark.parametrize(("setting", "message"), [
    ("csat_survey = 1", "flow.csat_survey: must be true or false"),
    ("csat_survey = true\ncsat_timeout_s = 90", "flow.csat_timeout_s: must be a number of seconds")])
def test_bad_survey_options_are_named_with_their_line(tmp_path, setting, message):
    path = tmp_path / "bad.toml"
    path.write_text(DEFAULT_FLOW.read_text().replace("[flow]\n", f"[flow]\n{setting}\n", 1))
    with pytest.raises(FlowError) as failed:
        load_flow(path)
    line = DEFAULT_FLOW.read_text().splitlines().index("[flow]") + (3 if "timeout" in setting else 2)
    assert f"bad.toml:{line}: {message}" in str(failed.value)


# --- the figures from stored calls ---------------------------------------------------------
def _calls(group: str, ratings: list[int | None], offered: int) -> list[CallFacts]:
    calls = [CallFacts(f"{group}-{i}", 0.0, 60.0, "completed", survey="rated" if r else "silence",
                       csat=r, labels={"plan": group, "ab_survey_wording": group})
             for i, r in enumerate(ratings)]
    return calls + [CallFacts(f"{group}-x{i}", 0.0, 60.0, "completed", survey="hung_up",
                              labels={"plan": group, "ab_survey_wording": group})
                    for i in range(offered - len(ratings))]


def test_csat_kpis_fairness_and_ab_comparison():
    happy = _calls("gold", [5, 5, 4, 4, 5, 4, 5, 3, 5, 4, 5, 4], 16)
    unhappy = _calls("basic", [2, 1, 3, 2, 4, 2, 1, 3, 2, 2, 1, 5], 12)
    k = compute(happy)
    assert (k.csat_offered, k.csat_rated) == (16, 12)
    assert k.csat_mean == pytest.approx(53 / 12) and k.csat_satisfied == pytest.approx(11 / 12)
    assert k.csat_response_rate == 0.75
    assert k.csat_ratings == {"1": 0, "2": 0, "3": 1, "4": 5, "5": 6}
    split = fairness(happy + unhappy)["dimensions"]["plan"]
    assert split["basic"]["flagged"] == ["csat_satisfied"] and split["gold"]["flagged"] == []
    few = fairness(happy + _calls("basic", [1, 1], 12), min_calls=5)["dimensions"]["plan"]
    assert few["basic"]["flagged"] == []  # two ratings say nothing about a group
    test = compare(happy + unhappy, {"survey_wording": "gold"})["survey_wording"]
    versus = test["against_control"]["basic"]["csat_satisfied"]
    assert versus["significant"] and versus["difference"] == pytest.approx(2 / 12 - 11 / 12, abs=1e-4)
    assert test["variants"]["gold"]["csat"]["mean"] == pytest.approx(53 / 12, abs=1e-4)
    assert compute([CallFacts("n", 0.0, 1.0, "completed")]).csat_mean is None


# --- real calls ------------------------------------------------------------------------
async def _ended(server, call_id: str):
    for _ in range(400):
        record = await server.record(call_id)
        if record is not None and record.ended_at is not None:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} did not end")


async def _to_survey(call: Caller, speech) -> dict:
    await call.prompt("menu")
    call.say(speech)  # "where is my order", recognised by the real engine
    await call.prompt("order_status")
    await call.prompt("anything_else")
    return await call.prompt("csat_survey")  # silence at "anything else?" ends the call


@pytest.mark.e2e
async def test_real_calls_rated_skipped_by_silence_and_by_hang_up(start_server, en_engine, tmp_path):
    server = await start_server(en_engine, flow=str(surveyed_flow(tmp_path)),
                                no_input_timeout_s=2.0)
    speech, _ = read_wav(FIXTURES / "en_order_status.wav")
    async with Caller(server.ws, call_id="rated") as call:
        survey = await _to_survey(call, speech)
        assert survey["text"] == EN.prompts["csat_survey"]
        await call.keys("4")
        await call.prompt("goodbye")
        assert (await call.event("end"))["reason"] == "completed"
    async with Caller(server.ws, call_id="silent") as call:
        await _to_survey(call, speech)
        await call.prompt("goodbye")  # no key for csat_timeout_s: skipped, not held
        assert (await call.event("end"))["reason"] == "completed"
    async with Caller(server.ws, call_id="gone") as call:
        await _to_survey(call, speech)
        await call.hang_up()
    async with Caller(server.ws, call_id="transfer") as call:
        await call.prompt("menu")
        await call.keys("0")
        assert (await call.event("end"))["reason"] == "handoff:caller_request"
    stored = {i: await _ended(server, i) for i in ("rated", "silent", "gone", "transfer")}
    assert {i: (r.outcome, r.survey, r.csat) for i, r in stored.items()} == {
        "rated": ("completed", "rated", 4), "silent": ("completed", "silence", None),
        "gone": ("completed", "hung_up", None), "transfer": ("handoff", "", None)}

    status, text = await server.api("/metrics", token=None)
    assert status == 200
    assert "voicebot_csat_offered_total 3.0" in text
    for result in ("rated", "silence", "hung_up"):
        assert f'voicebot_csat_results_total{{result="{result}"}} 1.0' in text
    assert "voicebot_csat_rating_sum 4.0" in text and "voicebot_csat_rating_count 1.0" in text

    now = time.time()
    report = await build_report(SqlCallSource(server.settings.db), now - 600, now + 60)
    k = report["kpis"]
    assert (k["csat_offered"], k["csat_rated"], k["csat_mean"]) == (3, 1, 4.0)
    assert k["csat_satisfied"] == 1.0 and k["csat_response_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert "csat" not in report["not_measured"]
    assert json.loads(render(report, "json"))["kpis"]["csat_ratings"]["4"] == 1
    table = render(report, "table")
    assert "CSAT, mean rating (1-5)" in table and "CSAT response rate                 33.3 %" in table
    page = render(report, "html")
    assert "CSAT ratings (mean 4.00)" in page and "<svg" in page
    status, served = await server.api("/api/reports/kpi?since=1h&format=json")
    assert status == 200 and served["kpis"]["csat_rated"] == 1


@pytest.mark.e2e
async def test_a_korean_caller_is_asked_and_rates_in_korean(start_server, tmp_path):
    from voicebot.asr.fake import FakeEngine

    # keys only: no speech to recognise; the prompts are spoken by the real synthesizer
    server = await start_server(FakeEngine(language="ko"), flow=str(surveyed_flow(tmp_path)),
                                language="ko", no_input_timeout_s=1.0)
    async with Caller(server.ws, call_id="ko-rated", language="ko") as call:
        await call.prompt("menu")
        await call.keys("2")  # a password reset, then silence at "anything else?"
        survey = await call.prompt("csat_survey")
        assert survey["text"] == KO.prompts["csat_survey"]
        await call.keys("5")
        assert (await call.prompt("goodbye"))["text"] == KO.prompts["goodbye"]
        assert (await call.event("end"))["reason"] == "completed"
    record = await _ended(server, "ko-rated")
    assert (record.language, record.survey, record.csat) == ("ko", "rated", 5)


@pytest.mark.e2e
@pytest.mark.parametrize(("opt_out_key", "outcome", "survey", "rating"), [
    ("9", "handoff:opted_out", "person", None),  # the disclosure's key still opts out
    ("5", "completed", "rated", 5)])  # but a key the survey asked for is a rating
async def test_the_opt_out_key_at_the_survey(start_server, tmp_path, opt_out_key, outcome, survey,
                                             rating):
    from voicebot.asr.fake import FakeEngine

    disclosure = (f"You've reached our automated assistant, a computer. Press {opt_out_key} "
                  "to always speak to a person.")
    server = await start_server(FakeEngine(), flow=str(surveyed_flow(tmp_path)),
                                opt_out_key=opt_out_key, disclosure_text=disclosure,
                                no_input_timeout_s=1.0)
    async with Caller(server.ws, call_id="opt") as call:
        await call.prompt("menu")
        await call.keys("1")
        await call.prompt("csat_survey")
        await call.keys(opt_out_key)
        assert (await call.event("end"))["reason"] == outcome
    record = await _ended(server, "opt")
    assert (record.survey, record.csat) == (survey, rating)
    assert (record.handoff_reason == "opted_out") == (outcome == "handoff:opted_out")
