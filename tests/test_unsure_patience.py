"""A turn whose grammar reading would not be acted on alone waits longer for the
second opinion (VOICEBOT_SECOND_OPINION_UNSURE_TIMEOUT_S) than one it would act on
(VOICEBOT_SECOND_OPINION_TIMEOUT_S): without the opinion, that caller would be asked
again. A CallSession on a scripted grammar and a free-form engine that takes 0.4 s a
job, with the usual budget at 0.2 s."""

from __future__ import annotations

import time

import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.transcript.base import FakeFreeFormEngine
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.worker import InlineTranscriber
from voicebot.types import Transcript

from .session_kit import speech

JOB_S, BUDGET_S = 0.4, 0.2


class Slow(FakeFreeFormEngine):
    """Hears `text` in any audio, after JOB_S of work."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        heard = super().transcribe(pcm, prompt)
        time.sleep(JOB_S)  # the engine's work, not a wait for an event
        return Transcript(self.text, 0.9, heard.words)


async def call_after(kit, grammar: Transcript, heard: str, unsure_s: float):
    whisper = Slow(heard)
    call = await kit.start_call(FakeEngine([grammar]), opinion=SecondOpinion(InlineTranscriber(whisper), "en",
                                                                               BUDGET_S),
                                second_opinion_early=False, second_opinion_unsure_timeout_s=unsure_s)
    await call.prompted("menu")
    call.feed(speech())
    return call, whisper


@pytest.mark.parametrize(("unsure_s", "outcome"), [(5.0, "caller_request"), (BUDGET_S, None)])
async def test_an_unsure_turn_waits_longer_for_the_second_opinion(kit, unsure_s, outcome):
    """The grammar heard nothing it knows; Whisper, 0.4 s later, a clear request: with the
    longer budget the caller is put through, with the usual one asked again."""
    call, whisper = await call_after(kit, Transcript("", 0.0), "Get me a person, please.", unsure_s)
    if outcome:
        await call.ended()
        assert call.handoff_reason == outcome
    else:
        await call.prompted("didnt_catch")
    assert len(whisper.seen) == 1
    assert call.session.services.opinion.counts.late == (0 if outcome else 1)


async def test_a_reading_the_grammar_would_act_on_keeps_the_usual_budget(kit):
    """A sure routine request: the opinion late at 0.2 s, the grammar's answer stands."""
    call, whisper = await call_after(kit, Transcript("where is my order", 0.95), "Where is my order?", 5.0)
    await call.prompted("order_status")
    assert call.session.services.opinion.counts.late == 1
