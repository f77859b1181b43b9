"""The second opinion asked at a pause, before the turn's hangover has run out
(voicebot/call/early_opinion.py): a CallSession on a scripted grammar engine
and a scripted free-form engine, audio fed as a gateway sends it.

The partial result at the pause decides whether to ask early; the turn's end
decides whether that answer is used (ended in the same pause) or dropped."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.call.early_opinion import BEHIND_S
from voicebot.transcript.base import FakeFreeFormEngine
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.worker import InlineTranscriber
from voicebot.types import Partial, Transcript

from .session_kit import Call, Kit, words

LINE_RATE = 8000


SPEECH_ENDS = 2.75 - 0.95  # in words(), seconds
# what the grammar says at the pause: a guess it would not act on alone
UNSURE = Partial("agent", 0.3, True)
NOTHING = Transcript("", 0.0)  # what the grammar makes of the whole turn


class Hears(FakeFreeFormEngine):
    """Hears `text` in any audio; `asked` is set by each job (the engine's thread)."""

    def __init__(self, text: str, confidence: float = 0.9, fit: float = 0.0) -> None:
        super().__init__(fit=fit)
        self.text, self.confidence = text, confidence
        self.asked = threading.Event()

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        heard = super().transcribe(pcm, prompt)
        self.asked.set()
        return Transcript(self.text, self.confidence, heard.words)



async def asked(engine: Hears) -> None:
    """Waits until the engine has been given a job."""
    await asyncio.wait_for(asyncio.to_thread(engine.asked.wait, 10), 15)
    engine.asked.clear()


async def caller_speaks(kit: Kit, *, heard: str | Hears = "get me a person",
                        final: Transcript = NOTHING, partial=lambda audio: UNSURE,
                        **settings) -> tuple[Call, Hears, FakeEngine]:
    """A call at its menu whose caller has just said words(): the grammar says
    `partial` at a pause and `final` at the turn's end; Whisper hears `heard`."""
    whisper = heard if isinstance(heard, Hears) else Hears(heard)
    grammar = FakeEngine([final], partial=partial)
    call = await kit.start_call(grammar, opinion=SecondOpinion(InlineTranscriber(whisper), "en", 10),
                                **settings)
    await call.prompted("menu")
    call.feed(words())
    return call, whisper, grammar


async def test_the_opinion_asked_at_the_pause_decides_the_turn(kit):
    """The grammar hears nothing it can act on; Whisper's words are asked for at
    the 200 ms pause, on the audio so far, and are what the turn ends with."""
    call, whisper, _ = await caller_speaks(kit, turn_complete_words=False)  # the hangover ends the turn
    call.silence(0.3)  # past the 200 ms pause, within the 500 ms hangover
    await asked(whisper)
    call.silence(1.0)
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert len(whisper.seen) == 1  # not asked again at the turn's end
    # on the audio up to the pause: the turn's less the hangover after it (300 ms, less up
    # to 100 ms of audio still in the resampler at the pause)
    assert whisper.seen[0] / 16000 <= turn_seconds(call) - 0.15


async def test_speech_after_the_pause_drops_the_early_answer(kit):
    call, whisper, grammar = await caller_speaks(kit, turn_complete_words=False)
    call.silence(0.3)
    await asked(whisper)
    call.feed(words())  # the caller goes on: the answer asked at the pause is not theirs
    call.silence(0.3)
    await asked(whisper)  # a second pause, asked again
    call.silence(1.0)
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert len(whisper.seen) == 2 and whisper.seen[1] > whisper.seen[0] + words().size
    assert whisper.seen[1] / 16000 <= turn_seconds(call) - 0.15


async def test_a_sure_grammar_reading_at_the_end_is_checked_with_the_early_answer(kit):
    """Every answer to an open question is checked, however sure the grammar is: the
    answer asked at the pause the turn ended in is the check (Whisper is not asked again)."""
    call, whisper, grammar = await caller_speaks(kit, heard="I'm looking for a plumber.",
                                                 final=Transcript("looking for an order", 0.95))
    call.silence(0.3)
    await asked(whisper)
    call.silence(1.0)
    await call.prompted("didnt_catch")  # Whisper's confident other words, not the grammar's order
    assert len(whisper.seen) == 1


@pytest.mark.parametrize(("final", "said"), [
    ("i want a live someone", "didnt_catch"),  # the words checked at the pause: their misfit counts
    ("i want to talk to a live person", "confirm_human"),  # other words at the end: not checked
])
async def test_the_early_answer_checks_the_grammars_words_at_the_pause(kit, final, said):
    """Whisper scored the grammar's words at the pause as other speech forced into a
    phrase (reading.MISFIT); that counts only if the turn's words are the same."""
    weather = Hears("Watch the weather like tomorrow.", confidence=0.6, fit=-6.0)
    call, whisper, _ = await caller_speaks(kit, heard=weather, final=Transcript(final, 0.54),
                                           partial=lambda audio: Partial("i want a live someone", 0.3, True))
    call.silence(0.3)
    await asked(whisper)
    call.silence(1.0)
    await call.prompted(said)
    assert whisper.checks == ["i want a live someone"], "asked once, at the pause, with its words"


async def test_a_whole_phrase_at_the_pause_ends_the_turn_without_an_early_ask(kit):
    """The turn ends at the pause: the opinion is asked once, on the whole turn, as before."""
    call, whisper, _ = await caller_speaks(kit, final=Transcript("agent", 0.7),
                                           partial=lambda audio: Partial("agent", 0.9, True))
    call.silence(1.5)
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert len(whisper.seen) == 1


@pytest.mark.parametrize("settings", [{"second_opinion_early": False},
                                      {"turn_complete_ms": 0}],  # a fixed hangover: no pauses reported
                         ids=["off", "fixed-hangover"])
async def test_asked_on_the_whole_turn_when_early_asks_are_off_or_nothing_paused(kit, settings):
    call, whisper, grammar = await caller_speaks(kit, **settings)
    call.silence(1.5)
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert len(whisper.seen) == 1 and whisper.seen[0] / 16000 >= turn_seconds(call) - 0.05
    assert grammar.partials == 0 or settings.get("second_opinion_early") is False


def turn_seconds(call) -> float:
    """Seconds of the call's one speech turn, as the bot timed it."""
    turns = call.channel.events("transcript")
    assert len(turns) == 1
    return turns[0]["end"] - turns[0]["start"]


async def test_a_whole_request_in_the_early_words_ends_the_turn_at_once(kit, caplog):
    caplog.set_level(logging.DEBUG, logger="voicebot.call.session")
    call, whisper, grammar = await caller_speaks(kit, heard="Could you get me a person?")
    call.silence(0.3)  # the turn would end after 0.5 s of silence: not yet
    await asked(whisper)
    await call.channel.wait_for("event", lambda e: e.get("event") == "transcript")
    call.silence(1.0)
    await call.ended()
    turn = call.channel.events("transcript")[0]
    assert turn["early"] is True and turn["end"] < SPEECH_ENDS + 0.45  # before the 500 ms hangover
    assert call.handoff_reason == "caller_request"
    said = [r.getMessage() for r in caplog.records if "early opinion" in r.getMessage()]
    assert said and said[0].endswith("intent=True -> 0")  # what ended the turn, for whoever reads the log
    assert not any("person" in line for line in said)  # and not the caller's words


async def turn_after_early_words(kit, heard: str, partial: Callable[[bytes], Partial] = lambda audio: UNSURE,
                                 after: float = 1.0) -> tuple[Call, Hears, dict]:
    """The caller says words() and pauses; Whisper, asked at the pause, hears `heard`
    and the session judges it; then `after` seconds more silence: the ended turn."""
    call, whisper, _ = await caller_speaks(kit, heard=heard, partial=partial)
    call.silence(0.3)
    await asked(whisper)
    await answered(call)
    call.silence(after)
    turn = (await call.channel.wait_for("event", lambda e: e.get("event") == "transcript"))[2]
    return call, whisper, turn


@pytest.mark.parametrize("heard", ["my agent told me to call", "Uh, the weather",
                                   "I'd like to book a table for"])  # other speech, trailing off
async def test_words_that_ask_for_nothing_clearly_wait_for_the_hangover(kit, heard):
    _, _, turn = await turn_after_early_words(kit, heard)
    assert turn["early"] is False and SPEECH_ENDS + 0.49 <= turn["end"] < SPEECH_ENDS + 0.75


@pytest.mark.parametrize("heard", ["Can I talk to?", "I want to talk to", "My order is late and"])
async def test_requests_that_trail_off_let_the_pause_run_to_the_mid_phrase_limit(kit, heard):
    """"Can I talk to ... a human": the grammar heard nothing it knows (a guess it
    would not act on), Whisper heard a request drawing breath: the pause may last
    800 ms, not the 500 ms hangover that cut this caller off mid-sentence."""
    _, _, turn = await turn_after_early_words(kit, heard, after=1.2)
    assert turn["early"] is False and SPEECH_ENDS + 0.79 <= turn["end"] < SPEECH_ENDS + 1.0


def test_a_whole_clear_request_that_does_not_trail_off_ends_a_turn():
    from voicebot.call.turns import words_end_turn
    from voicebot.dialog.understand import Interpretation

    assert words_end_turn("Get me a person.", Interpretation("human"))
    assert words_end_turn("yes", Interpretation("yes"))
    assert not words_end_turn("I need a person and", Interpretation("human"))  # goes on
    assert not words_end_turn("speak to someone", Interpretation("human", certain=False))
    assert not words_end_turn("my agent", Interpretation("human", mention=True))
    assert not words_end_turn("the weather", Interpretation(None))
    assert not words_end_turn("", Interpretation(None))


def test_words_trail_off_where_a_sentence_goes_on():
    from voicebot.call.turns import trails_off

    assert trails_off("Can I talk to?") and trails_off("my order, and") and trails_off("um")
    assert not trails_off("Can I talk to a human?") and not trails_off("") and not trails_off("Operator.")


@pytest.mark.parametrize(("at_pause", "ahead", "queue"), [
    ("no opinion yet", 0, 1),
    ("engine busy", 2, 1),  # more asks ahead than VOICEBOT_SECOND_OPINION_EARLY_QUEUE
    ("engine busy", 1, 0),  # only an idle engine
], ids=["no-opinion-yet", "two-ahead", "one-ahead-idle-only"])
async def test_nothing_is_asked_early_without_spare_capacity(kit, at_pause, ahead, queue):
    """A grammar without an opinion yet (its decoders busy in a burst) or a busy
    free-form engine: the turn's own audio is asked about at its end, as before."""
    nothing = Partial("", 0.0, False)
    call, whisper, grammar = await caller_speaks(
        kit, partial=lambda audio: nothing if at_pause == "no opinion yet" else UNSURE,
        second_opinion_early_queue=queue)
    opinion = call.session.services.opinion
    opinion._waiting += ahead  # other calls' jobs, queued or running
    call.silence(0.3)
    await paused(call)  # the pause was handled: nothing asked
    assert grammar.partials >= 1 and whisper.seen == []
    opinion._waiting = 0
    call.silence(1.2)
    await call.ended()
    assert len(whisper.seen) == 1
    assert whisper.seen[0] / 16000 >= turn_seconds(call) - 0.05  # the whole turn, at its end


async def test_asked_early_behind_another_calls_job(kit):
    """One ask ahead (VOICEBOT_SECOND_OPINION_EARLY_QUEUE, 1 by default) still leaves
    room: the pause's audio is asked about and its answer decides the turn."""
    call, whisper, _ = await caller_speaks(kit, turn_complete_words=False)
    opinion = call.session.services.opinion
    opinion._waiting += 1  # another call's job
    call.silence(0.3)
    await asked(whisper)
    opinion._waiting -= 1
    call.silence(1.0)
    await call.ended()
    assert call.handoff_reason == "caller_request"
    assert len(whisper.seen) == 1 and whisper.seen[0] / 16000 <= turn_seconds(call) - 0.15


async def test_a_grammar_that_heard_nothing_it_knows_asks_early(kit):
    """Other speech: the grammar decoded the audio so far and its best path is empty.
    That is an opinion (unlike no opinion yet): Whisper is asked at the pause."""
    call, whisper, _ = await caller_speaks(kit, heard="Do you sell gift cards?",
                                           partial=lambda audio: Partial("", 0.0, False, decoded=True))
    call.silence(0.3)
    await asked(whisper)
    call.silence(1.0)
    await call.prompted("didnt_catch")
    assert len(whisper.seen) == 1 and whisper.seen[0] / 16000 <= turn_seconds(call) - 0.15


async def answered(call) -> None:
    """Waits until the opinion asked at the pause has answered and its callbacks ran."""
    early = call.session._listener._early
    assert early is not None
    await asyncio.wait([early.answer])
    await asyncio.sleep(0)


async def paused(call) -> None:
    """Waits until the session has handled the pauses reported so far."""
    while handling := [t for t in call.session.tasks.running if t.get_name() == "turn-pause"]:
        await asyncio.wait(handling)
    await asyncio.sleep(0)  # an early ask started by one of them has reached the engine's thread


async def test_the_grammar_hearing_the_middle_of_a_phrase_outweighs_whole_early_words(kit):
    """"I need to reset ... my password": Whisper's words at the pause are a whole
    request, but the grammar hears the same words as a phrase begun; the pause
    may run its 800 ms."""
    _, whisper, turn = await turn_after_early_words(
        kit, "I need to reset.", partial=lambda audio: Partial("i need to reset", 0.5, False))
    assert turn["end"] >= SPEECH_ENDS + 0.79  # the mid-phrase wait, not cut at the words
    assert len(whisper.seen) == 1  # the early answer was still the turn's


async def test_early_words_past_the_grammars_beginning_end_the_turn(kit):
    """The grammar reads "i want to speak to a" and waits for the rest of its phrase;
    Whisper heard the same start and how it ended: the caller has finished."""
    call, whisper, _ = await caller_speaks(kit, heard="I want to speak to a person.",
                                           partial=lambda audio: Partial("i want to speak to a", 0.5, False))
    call.silence(0.3)
    await asked(whisper)
    await call.channel.wait_for("event", lambda e: e.get("event") == "transcript")
    call.silence(1.0)
    await call.ended()
    turn = call.channel.events("transcript")[0]
    assert turn["early"] is True and turn["end"] < SPEECH_ENDS + 0.45  # not the 800 ms mid-phrase wait
    assert call.handoff_reason == "caller_request"


async def test_a_fluent_sentence_of_another_start_ends_the_phrase_wait(kit):
    """The grammar forced other speech into a phrase's beginning ("i need to speak to
    a live") and would hold the pause 800 ms for its end; Whisper heard a whole
    sentence of another start: the turn ends after the hangover, as other speech does."""
    call, _, turn = await turn_after_early_words(
        kit, "My neighbor keeps parking in my spot.",
        partial=lambda audio: Partial("i need to speak to a live", 0.5, False))
    assert SPEECH_ENDS + 0.45 <= turn["end"] < SPEECH_ENDS + 0.7  # the 500 ms hangover, not the 800 ms wait
    await call.prompted("didnt_catch")


def test_another_sentence_is_fluent_whole_and_starts_otherwise():
    from voicebot.call.turns import another_sentence

    assert another_sentence("My neighbor keeps parking in my spot.", 0.8, "i need to speak to a live")
    assert another_sentence("Can you sing me a song?", 0.74, "can you put me through to an")  # 3 of 7 shared
    assert not another_sentence("I want to speak.", 0.9, "i want to speak to a")  # the caller's own start
    assert not another_sentence("My neighbor keeps parking in my", 0.9, "i need to speak")  # trails off
    assert not another_sentence("My neighbor keeps parking.", 0.3, "i need to speak")  # a guess
    assert not another_sentence("We're in.", 0.62, "where is")  # "where is ... my order" misheard: too short
    assert not another_sentence("", 0.9, "i need to") and not another_sentence("Hello.", 0.9, "")


def test_words_go_past_the_grammars_beginning_only_from_the_same_start():
    from voicebot.call.turns import goes_past

    assert goes_past("I want to speak to a person.", "i want to speak to a")
    assert goes_past("I want to speak, to the person.", "i want to speak to a")  # one word differs
    assert goes_past("Let me speak for real person.", "let me speak to a real")  # two of six differ
    assert not goes_past("I need to reset.", "i need to reset")  # the same words
    assert not goes_past("I need to reset.", "i need an")  # two words shared: too few
    assert not goes_past("Could you get me a person?", "i want to")  # another start
    assert not goes_past("Agent, please.", "")


async def test_recognisers_behind_the_audio_mean_no_early_ask(kit):
    def slow(audio: bytes) -> Partial:
        time.sleep(BEHIND_S + 0.05)  # the engine catching up on audio, as in a burst
        return UNSURE

    call, whisper, grammar = await caller_speaks(kit, partial=slow)
    call.silence(0.3)
    await paused(call)
    assert grammar.partials >= 1 and whisper.seen == []
    call.silence(1.2)
    await call.ended()
    assert len(whisper.seen) == 1 and whisper.seen[0] / 16000 >= turn_seconds(call) - 0.05
