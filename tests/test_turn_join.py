"""A caller who speaks on before the bot answered is heard as one turn.

The endpointer ends a turn after a short silence; when the caller goes on
before the turn's reading has reached the policy ("where is my order … it was
due yesterday"), answering the first half would talk over the second. The
session then drops the first half's reading and hears it again with what
followed (VOICEBOT_TURN_JOIN_MS). Scripted calls prove the branches; a real
server, gateway client, engine and recording prove the path a caller takes.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.events import SpeechEndDetected, TurnJoined
from voicebot.metrics import Metrics
from voicebot.ops.observer import CallObserver
from voicebot.replay.client import ReplayOptions, replay
from voicebot.types import Transcript, Utterance

from .conftest import TURNS, turn_entry
from .session_kit import LINE_RATE, words

HANGOVER_S = 0.5  # the default: the silence that ends a turn here (no whole phrase is heard)
BOTH_HALVES = Transcript("agent please", 0.95)



def by_length(long_enough: int):
    """Hears a request for a person only in audio of at least `long_enough` bytes: both halves."""
    return lambda audio: BOTH_HALVES if len(audio) >= long_enough else Transcript("", 0.0)


def half_bytes() -> int:
    """The bytes one half is at the recogniser's rate (16 kHz, 16-bit)."""
    return words().size * 2 * 16000 // LINE_RATE


async def two_transcripts(call) -> None:
    def said(e):
        return e.get("event") == "transcript"

    first = await call.channel.wait_for("event", said)
    await call.channel.wait_for("event", said, after=call.channel.sent.index(first) + 1)


async def caller_goes_on(kit, reads):
    """A call at the menu whose caller says words, falls silent long enough to end the
    turn, and goes on before its reading is ready; the engine hears `reads(audio)`."""
    call = await kit.start_call(FakeEngine(reads))
    await call.prompted("menu")
    call.feed(words())
    call.silence(HANGOVER_S + 0.1)  # the turn ends here ...
    call.feed(words())  # ... and the caller goes on before its reading is ready
    call.silence(1.0)
    return call


async def test_speech_right_after_an_unanswered_turn_joins_it(kit):
    call = await caller_goes_on(kit, by_length(2 * half_bytes()))
    await call.ended()
    said = call.channel.events("transcript")
    assert [u["text"] for u in said] == ["agent please"]
    assert said[0]["start"] < words().size / LINE_RATE < said[0]["end"]  # it spans both halves
    assert call.handoff_reason == "caller_request"
    assert len(call.of_kind("turn_joined")) == 1
    joined, alone = call.engine.received[-2:]
    assert joined >= 2 * half_bytes()  # the joined turn's audio came first
    assert half_bytes() <= alone < 2 * half_bytes()  # and its new speech was heard on its own too
    # the first half's recognition was finished, not leaked; the second half was also heard alone
    assert call.engine.finished == 3


async def test_a_request_after_words_the_grammar_has_none_for_is_heard_on_its_own(kit):
    """"hello, is anyone there … I want to speak to a person": the grammar makes
    nothing of the two joined, and the second stretch alone is a request."""
    def reads(audio: bytes) -> Transcript:
        return Transcript("", 0.1) if len(audio) >= 2 * half_bytes() else BOTH_HALVES

    call = await caller_goes_on(kit, reads)
    await call.ended()
    assert len(call.of_kind("turn_joined")) == 1
    said = call.channel.events("transcript")
    assert [u["text"] for u in said] == ["agent please"]
    assert said[0]["start"] < words().size / LINE_RATE  # still the whole turn's utterance
    assert call.handoff_reason == "caller_request"


async def test_a_joined_turn_the_bot_is_sure_of_is_not_heard_again_in_parts(kit):
    """The last stretch is decoded alone only when the whole turn's reading would not be
    acted on as it stands: joins come most in a burst, where every extra decoding makes
    every caller wait. Here the stretch alone would be a surer request for a person."""
    def reads(audio: bytes) -> Transcript:
        return Transcript("where is my order", 0.9) if len(audio) >= 2 * half_bytes() else BOTH_HALVES

    call = await caller_goes_on(kit, reads)
    await call.prompted("order_status")
    assert len(call.of_kind("turn_joined")) == 1
    assert call.engine.received[-1] >= 2 * half_bytes()  # the whole turn was the last one heard
    assert call.engine.finished == 2  # the first half, then the whole; never the stretch alone


def voice_onset() -> np.ndarray:
    """One 20 ms frame of the caller's voice: less than the detector needs to call it speech."""
    start = int(0.1 * LINE_RATE)  # inside the first word
    return words()[start: start + LINE_RATE // 50]


async def held_answer(kit, reads):
    """A call at the menu whose caller says words and falls silent long enough to end the
    turn; their voice starts again (one frame) before the reading is answered. Returns
    when the session holds the answer (the caller may be going on)."""
    call = await kit.start_call(FakeEngine(reads))
    held = asyncio.Event()
    call.session.services.events.subscribe(lambda e: e.kind == "answer_held" and held.set())
    await call.prompted("menu")
    call.feed(words())
    call.silence(HANGOVER_S + 0.1)  # the turn ends here
    call.feed(voice_onset())
    async with asyncio.timeout(5):
        await held.wait()
    return call


def first_half_is_an_order(audio: bytes) -> Transcript:
    return BOTH_HALVES if len(audio) >= 2 * half_bytes() else Transcript("where is my order", 0.9)


async def test_an_answer_waits_while_the_callers_voice_starts_again_and_they_go_on(kit):
    """"agent … please": the reading of "agent" is ready as the caller's voice starts
    again. Answering it would talk over them; the answer waits, their voice becomes
    speech, and the two are heard as one turn."""
    call = await held_answer(kit, first_half_is_an_order)
    call.feed(words()[int(0.1 * LINE_RATE) + LINE_RATE // 50:])  # the caller goes on
    call.silence(1.0)
    await call.ended()
    assert len(call.of_kind("turn_joined")) == 1
    assert [u["text"] for u in call.channel.events("transcript")] == ["agent please"]
    assert "order_status" not in [p["name"] for p in call.channel.events("prompt")]
    assert call.handoff_reason == "caller_request"


async def test_an_answer_held_for_a_blip_of_noise_is_given_at_once_after_it(kit):
    """A voiced frame that never becomes speech holds the answer no longer than the
    detector needs to tell: the caller's question is answered."""
    call = await held_answer(kit, first_half_is_an_order)
    await call.prompted("order_status")
    assert call.of_kind("turn_joined") == []
    assert [u["text"] for u in call.channel.events("transcript")] == ["where is my order"]


async def test_with_joining_off_the_caller_is_cut_in_two(kit):
    call = await kit.start_call(FakeEngine(by_length(2 * half_bytes())), turn_join_ms=0,
                                low_confidence_turns=3)
    await call.prompted("menu")
    call.feed(words())
    call.silence(HANGOVER_S + 0.1)
    call.feed(words())
    call.silence(1.5)
    await two_transcripts(call)
    assert [u["text"] for u in call.channel.events("transcript")] == ["", ""]
    assert call.of_kind("turn_joined") == []
    call.session.on_hangup()
    await call.ended()


async def test_a_turn_already_answered_is_not_joined(kit):
    call = await kit.start_call(FakeEngine([Transcript("", 0.0), BOTH_HALVES]))
    await call.prompted("menu")
    call.feed(words())
    call.silence(HANGOVER_S + 0.1)
    await call.prompted("didnt_catch")  # the policy had the first reading
    call.feed(words())
    call.silence(1.5)
    await call.ended()
    assert [u["text"] for u in call.channel.events("transcript")] == ["", "agent please"]
    assert call.of_kind("turn_joined") == []


async def test_speech_after_the_join_window_is_a_turn_of_its_own(kit):
    engine = FakeEngine(by_length(2 * half_bytes()), delay_s=30)  # no reading reaches the policy
    call = await kit.start_call(engine, turn_join_ms=300, low_confidence_turns=3)
    await call.prompted("menu")
    call.feed(words())
    call.silence(HANGOVER_S + 0.3 + 0.6)  # longer than the window and the 300 ms pre-roll
    call.feed(words())
    call.silence(1.5)
    engine.release()
    await two_transcripts(call)
    assert call.of_kind("turn_joined") == []
    call.session.on_hangup()
    await call.ended()


def test_a_joined_turns_speech_end_is_not_timed_twice():
    """The first half's end has no result of its own: the recognition time is the joined turn's."""
    metrics = Metrics()
    observer = CallObserver(metrics)
    observer.on_call_event(SpeechEndDetected("c1", at=100.0))
    observer.on_call_event(TurnJoined("c1"))
    observer.on_call_event(SpeechEndDetected("c1", at=102.0))
    observer.utterance("c1", 102.25, Utterance("agent please", 0.9, 0.0, 2.0))
    assert metrics.sample("voicebot_turns_joined_total") == 1
    assert metrics.sample("voicebot_recognition_seconds_sum") == pytest.approx(0.25)
    assert metrics.sample("voicebot_recognition_seconds_count") == 1


# --- a real server, gateway client, engine and recording -----------------------------------
def talks_on() -> tuple[np.ndarray, int, list[list[float]]]:
    """"where is my order" … 350 ms … "it was due yesterday" (audio_fixtures/turns)."""
    entry = turn_entry("on_order_yesterday.wav")
    samples, rate = read_wav(TURNS / entry["file"])
    return samples, rate, entry["speech"]


async def heard(server, samples: np.ndarray, rate: int) -> list[dict]:
    # A gateway that delivers faster than real time (as one catching up after
    # network jitter does): the caller's second half reaches the bot before the
    # first half's reading can, whatever the machine's speed. The call's record,
    # not the events, tells what was heard: the caller hangs up before a slow
    # (loaded) recogniser answers, and the call's end waits for its readings.
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(speed=0, hangup_at=samples.size / rate + 1.0, max_call_s=30))
    await server.call_over()
    record = await server.record(result.call_id)
    return [u for u in record.utterances if u["source"] == "speech"]


@pytest.mark.e2e
@pytest.mark.engine
async def test_a_caller_who_talks_on_is_heard_whole_by_the_real_engine(start_server, en_engine):
    samples, rate, spoken = talks_on()
    fixed = {"turn_complete_ms": 0, "vad_hangover_ms": 200}  # 200 ms of the 350 ms breath end the turn
    joined = await heard(await start_server(en_engine, **fixed), samples, rate)
    assert len(joined) == 1, joined
    assert joined[0]["start"] < spoken[0][0] and joined[0]["end"] > spoken[1][1]
    assert "order" in joined[0]["text"].split()

    apart = await heard(await start_server(en_engine, turn_join_ms=0, **fixed), samples, rate)
    assert len(apart) == 2, apart  # what joining avoids: the first half answered on its own
