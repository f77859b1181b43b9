"""CallSession through fakes of everything around it (tests/session_kit.py):
every branch of a call in milliseconds. The end-to-end tests drive the same
paths through real servers, sockets, engines and speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.call.fake_channel import FakeChannel
from voicebot.call.lookup import FakeLookups
from voicebot.call.recording import FakeAudioRecorder
from voicebot.tts.fake import FakeSynthesizer
from voicebot.types import HandoffReason, Transcript

from .session_kit import LINE_RATE, ORDERS_FLOW, speech

HEARD_HUMAN = Transcript("i want to speak to a person", 0.95)
MUMBLE = Transcript("purple monkey dishwasher", 0.95)



def no_tasks_left(call) -> None:
    assert call.session.tasks.running == set(), call.session.tasks.running
    names = {t.get_name() for t in asyncio.all_tasks()} - {asyncio.current_task().get_name()}
    assert not {n for n in names if not n.startswith("test-call")}, names


# --- the disclosure ---------------------------------------------------------------------

async def test_the_disclosure_plays_first_and_is_recorded_before_anything_else(kit):
    call = await kit.start_call()
    await call.prompted("menu")
    first_audio = next(i for i, (_, kind, _) in enumerate(call.channel.sent) if kind == "audio")
    assert call.channel.prompts()[0] == "disclosure"
    assert call.channel.sent[first_audio - 1][2]["name"] == "disclosure"
    record = call.session.recorder.record
    assert record.disclosure_text and "automated" in record.disclosure_text.lower()
    assert record.disclosure_confirmed_by == "mark"
    assert record.disclosure_started_at <= record.disclosure_played_at
    call.session.on_hangup()
    await call.ended()
    assert call.store.records["c1"].disclosure_confirmed_by == "mark"
    no_tasks_left(call)


async def test_nothing_cuts_the_disclosure_short(kit):
    """Speech and a key press during the disclosure wait for it to finish."""
    call = await kit.start_call(FakeEngine([HEARD_HUMAN]), channel=FakeChannel(LINE_RATE, marks="keep"))
    await call.channel.wait_for("mark")
    call.speak()
    call.session.on_dtmf("0")
    await call.channel.wait_for("event", lambda e: e.get("event") == "transcript")
    assert call.channel.of("clear") == [] and call.channel.prompts() == ["disclosure"]
    call.channel.echo(call.channel.of("mark")[0])
    handoff = await call.prompted("handoff")
    call.channel.echo((await call.channel.wait_for("mark", after=handoff))[2])
    record = await call.ended()
    assert record.outcome == "handoff" and call.handoff_reason == "caller_request"
    assert [p["name"] for p in record.prompts] == ["disclosure", "handoff"]
    assert [p["confirmed_by"] for p in record.prompts] == ["mark", "mark"]


async def test_a_call_sent_to_a_person_at_once_hears_the_disclosure_first(kit):
    call = await kit.start_call(hand_over=HandoffReason.OVER_CAPACITY)
    record = await call.ended()
    assert call.channel.prompts() == ["disclosure", "handoff"]
    assert call.handoff_reason == "over_capacity" and record.handoff_reason == "over_capacity"
    assert call.channel.end_reason == "handoff:over_capacity"
    no_tasks_left(call)


# --- barge-in ----------------------------------------------------------------------------

async def test_speech_over_a_prompt_stops_it_and_clears_the_gateway(kit):
    call = await kit.start_call(FakeEngine([Transcript("where is my order", 0.9)]),
                                channel=FakeChannel(LINE_RATE, marks="keep"))
    await call.channel.wait_for("mark")
    call.channel.echo(call.channel.of("mark")[0])  # the disclosure played
    menu = await call.prompted("menu")
    await call.channel.wait_for("mark", after=menu)  # the menu is all sent, not yet played
    call.speak()
    await call.channel.wait_for("clear", after=menu)
    answer = await call.prompted("order_status", after=menu)
    assert call.channel.sent.index(next(e for e in call.channel.sent if e[1] == "clear")) < answer
    call.session.on_hangup()
    record = await call.ended()
    assert record.prompts[1]["name"] == "menu" and record.prompts[1]["confirmed_by"] == "interrupted"
    assert record.utterances[0]["intent"] == "order_status"
    no_tasks_left(call)


# --- every handoff reason ------------------------------------------------------------------

async def test_caller_request_by_speech(kit):
    call = await kit.start_call(FakeEngine([HEARD_HUMAN]))
    await call.prompted("menu")
    call.speak()
    record = await call.ended()
    assert call.handoff_reason == "caller_request" and record.handoff_reason == "caller_request"
    handoff = call.channel.events("handoff")[0]
    assert handoff["transcript"][0]["text"] == HEARD_HUMAN.text
    assert handoff["target"] == call.session.services.settings.human_line
    assert "caller" in handoff["summary"].lower() or handoff["summary"]
    assert call.of_kind("handoff_decided")[0].reason is HandoffReason.CALLER_REQUEST
    no_tasks_left(call)


async def test_caller_request_by_key_zero(kit):
    call = await kit.start_call()
    await call.prompted("menu")
    call.session.on_dtmf("0")
    record = await call.ended()
    assert call.handoff_reason == "caller_request"
    assert record.utterances[0]["source"] == "dtmf" and record.utterances[0]["text"] == "0"


async def test_low_confidence_turns(kit):
    call = await kit.start_call(FakeEngine([Transcript("mm", 0.2), Transcript("hm", 0.1)]))
    await call.prompted("menu")
    call.speak()
    await call.prompted("didnt_catch")
    call.speak()
    await call.ended()
    assert call.handoff_reason == "low_confidence"


async def test_clear_words_the_flow_does_not_know(kit):
    call = await kit.start_call(FakeEngine([MUMBLE, MUMBLE, MUMBLE]))
    await call.prompted("menu")
    for _ in range(3):
        if call.task.done():
            break
        mark = len(call.channel.sent)
        call.speak()
        await call.channel.wait_for("event", lambda e: e.get("event") in ("prompt", "handoff"), after=mark)
    await call.ended()
    assert "unresolved" in call.channel.prompts()  # asked again once, saying what the bot can do
    assert call.handoff_reason == "low_confidence"


async def test_no_input_turns(kit):
    call = await kit.start_call(no_input_timeout_s=0.05)
    record = await call.ended()
    assert call.handoff_reason == "no_input" and record.handoff_reason == "no_input"
    assert "no_input" in call.channel.prompts()


async def test_an_engine_that_fails_sends_the_call_to_a_person(kit):
    call = await kit.start_call(FakeEngine(error=RuntimeError("model file is corrupt")))
    await call.prompted("menu")
    call.speak()
    record = await call.ended()
    assert call.handoff_reason == "system_error" and record.handoff_reason == "system_error"
    assert [e.error for e in call.of_kind("call_error")] == ["recognition"]
    no_tasks_left(call)


async def test_an_engine_that_hangs_is_given_up_after_the_timeout(kit):
    engine = FakeEngine([HEARD_HUMAN], delay_s=30)
    call = await kit.start_call(engine, asr_timeout_s=0.2)
    await call.prompted("menu")
    call.speak()
    await call.ended()
    assert call.handoff_reason == "system_error"
    no_tasks_left(call)


async def test_an_engine_that_fails_on_audio_sends_the_call_to_a_person(kit):
    call = await kit.start_call(FakeEngine(error=RuntimeError("bad audio"), fail_in="accept"))
    await call.prompted("menu")
    call.speak()
    await call.ended()
    assert call.handoff_reason == "system_error"


async def test_a_prompt_that_cannot_be_spoken_sends_the_call_to_a_person(kit):
    synth = FakeSynthesizer(fail=RuntimeError("espeak died"), fail_on="How can I help")
    call = await kit.start_call(synth=synth)
    record = await call.ended()
    assert call.handoff_reason == "system_error" and record.handoff_reason == "system_error"
    assert call.channel.prompts() == ["disclosure", "menu", "handoff"]
    assert [e.error for e in call.of_kind("call_error")] == ["prompt"]


async def test_a_handoff_line_that_cannot_be_spoken_still_transfers(kit):
    synth = FakeSynthesizer(fail=RuntimeError("espeak died"), fail_on="connecting you")
    call = await kit.start_call(synth=synth)
    await call.prompted("menu")
    call.session.on_dtmf("0")
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert call.channel.end_reason == "handoff:caller_request"


async def test_routed_by_the_flow(kit):
    call = await kit.start_call(flow=ORDERS_FLOW)
    await call.prompted("menu")
    call.session.on_dtmf("2")  # billing: a transfer node
    record = await call.ended()
    assert call.handoff_reason == "routed" and record.handoff_target
    assert call.channel.events("handoff")[0]["target"] == call.session.flow.queues["billing"] \
        or call.session.flow.queues["billing"] == ""


@pytest.mark.parametrize(("reason", "settings"), [
    (HandoffReason.MAX_DURATION, {"max_call_s": 0.3}),
    (HandoffReason.MEDIA_TIMEOUT, {"idle_timeout_s": 0.3}),
])
async def test_limits_of_the_service(kit, reason, settings):
    call = await kit.start_call(**settings)
    record = await call.ended()
    assert call.handoff_reason == str(reason) and record.handoff_reason == str(reason)


@pytest.mark.parametrize("reason", [HandoffReason.SHUTDOWN, HandoffReason.OPTED_OUT])
async def test_the_service_hands_a_call_in_progress_over(kit, reason):
    call = await kit.start_call()
    await call.prompted("menu")
    call.session.hand_over(reason)
    call.session.hand_over(HandoffReason.SHUTDOWN)  # a handoff under way keeps its reason
    record = await call.ended()
    assert call.handoff_reason == str(reason) and record.handoff_reason == str(reason)


async def test_the_opt_out_key_sends_the_caller_to_a_person(kit):
    call = await kit.start_call(opt_out_key="9",
                                disclosure_text="This is an automated assistant. Press 9 to always speak to a person.")
    await call.prompted("menu")
    call.session.on_dtmf("9")
    record = await call.ended()
    assert call.handoff_reason == "opted_out" and record.handoff_reason == "opted_out"
    assert record.disclosure_text.endswith("Press 9 to always speak to a person.")


async def test_a_failure_on_the_audio_path_sends_the_call_to_a_person(kit, monkeypatch):
    class BrokenResampler:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def process(self, samples, last=False):
            raise ValueError("resampler state corrupted")

    monkeypatch.setattr("voicebot.call.listening.StreamResampler", BrokenResampler)
    engine = FakeEngine([HEARD_HUMAN])
    call = await kit.start_call(engine)
    await call.prompted("menu")
    call.speak()
    await call.ended()
    assert call.handoff_reason == "system_error"
    assert [e.error for e in call.of_kind("call_error")] == ["internal"]
    assert engine.finished == 0  # handed over at once, not after the recogniser's timeout
    no_tasks_left(call)


# --- recording with consent ------------------------------------------------------------

async def test_consent_keeps_the_callers_audio_from_then_on(kit):
    recordings = FakeAudioRecorder()
    call = await kit.start_call(recording="consent", recordings=recordings)
    await call.prompted("recording_consent")
    call.silence(0.5)  # before the answer: not kept
    assert recordings.calls == {}
    call.session.on_dtmf("1")
    await call.prompted("menu")
    call.speak(silence_s=0.2)
    call.session.on_hangup()
    record = await call.ended()
    assert record.recording_consent == "given"
    rate, sink = recordings.calls["c1"]
    assert rate == LINE_RATE and sink.closed
    kept = np.frombuffer(bytes(sink.pcm), "<i2")
    assert kept.size == speech().size + int(0.2 * LINE_RATE)
    assert np.array_equal(kept[:speech().size], speech())
    no_tasks_left(call)


@pytest.mark.parametrize(("answer", "consent"), [("2", "refused"), (None, "no_answer")])
async def test_no_consent_keeps_nothing(kit, answer, consent):
    recordings = FakeAudioRecorder()
    call = await kit.start_call(recording="consent", recordings=recordings, no_input_timeout_s=0.2)
    await call.prompted("recording_consent")
    if answer:
        call.session.on_dtmf(answer)
    await call.prompted("menu")
    call.speak(silence_s=0.2)
    call.session.on_hangup()
    record = await call.ended()
    assert record.recording_consent == consent and recordings.calls == {}


# --- lookups ----------------------------------------------------------------------------------

async def key_in_order(call, digits: str = "12345") -> None:
    await call.prompted("menu")
    call.session.on_dtmf("1")
    await call.prompted("order_number")
    for digit in digits + "#":
        call.session.on_dtmf(digit)
    confirm = await call.channel.wait_for("event", lambda e: e.get("event") == "prompt"
                                          and e["name"] not in ("disclosure", "menu", "order_number"))
    if "confirm" in confirm[2]["name"]:
        call.session.on_dtmf("1")


async def test_a_lookup_answers_with_the_backends_data(kit):
    lookups = FakeLookups({"status": "shipped on Monday"})
    call = await kit.start_call(flow=ORDERS_FLOW, lookups=lookups)
    await key_in_order(call)
    answer = await call.prompted("order_answer")
    assert "1 2 3 4 5" in call.channel.sent[answer][2]["text"]
    assert "shipped on Monday" in call.channel.sent[answer][2]["text"]
    action, context = lookups.requests[0]
    assert action.payload == {"order_number": "12345"} and context["call_id"] == "c1"
    call.session.on_hangup()
    await call.ended()
    no_tasks_left(call)


async def test_a_failed_lookup_goes_to_a_person_with_the_reason(kit):
    call = await kit.start_call(flow=ORDERS_FLOW, lookups=FakeLookups(fail="HTTP 503"))
    await key_in_order(call)
    record = await call.ended()
    assert call.handoff_reason == "lookup_failed" and "HTTP 503" in record.summary


async def test_no_lookup_client_is_a_failed_lookup(kit):
    call = await kit.start_call(flow=ORDERS_FLOW)
    await key_in_order(call)
    record = await call.ended()
    assert call.handoff_reason == "lookup_failed" and "not available" in record.summary


# --- the caller goes away ---------------------------------------------------------------------

async def test_hang_up_mid_utterance_keeps_what_was_said(kit):
    call = await kit.start_call(FakeEngine([Transcript("where is my order", 0.9)]))
    await call.prompted("menu")
    call.feed(speech())  # no silence after: the VAD has not heard the end
    call.session.on_hangup()
    record = await call.ended()
    assert record.outcome == "abandoned" and record.ended_at
    assert [u["text"] for u in record.utterances] == ["where is my order"]
    assert call.engine.finished == 1
    no_tasks_left(call)


async def test_hang_up_during_a_prompt_ends_the_call_and_every_task(kit):
    call = await kit.start_call(channel=FakeChannel(LINE_RATE, marks="keep"))
    await call.channel.wait_for("mark")
    call.session.on_hangup()
    record = await call.ended()
    assert record.outcome == "abandoned"
    assert record.prompts[0]["confirmed_by"] == "interrupted"
    assert call.of_kind("call_ended")[0].outcome == "abandoned"
    no_tasks_left(call)


async def test_a_late_key_after_the_call_starts_nothing(kit):
    call = await kit.start_call()
    call.session.on_hangup()
    await call.ended()
    call.session.on_dtmf("5")
    call.session.on_mark("whatever")
    no_tasks_left(call)


async def test_the_caller_says_goodbye_and_the_call_completes(kit):
    call = await kit.start_call(FakeEngine([Transcript("no thank you goodbye", 0.95)]))
    await call.prompted("menu")
    call.speak()
    record = await call.ended()
    assert record.outcome == "completed" and call.channel.end_reason == "completed"
    assert call.channel.prompts()[-1] == "goodbye"
