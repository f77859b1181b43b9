"""The caller's turn, from the start of their speech to the reading of it.

The session owns the voice activity detector and hands the listener its events
for the turn under way: the audio streams to the recogniser (at its rate) and
to the free-form transcript pass; at each short pause the recogniser is asked
what it has heard so far, which may end the turn there (turns.py) or ask the
second opinion before the turn's end (early_opinion.py). The ended turn is
read by the grammar, with the second opinion where the grammar is unsure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from voicebot.asr.runner import UtteranceRecognition
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import Endpointer, VadConfig, VadEvent
from voicebot.call.early_opinion import BEHIND_S, EarlyOpinion
from voicebot.call.services import CallServices
from voicebot.call.tasks import CallTasks
from voicebot.call.turns import TurnTiming, another_sentence, goes_past, pause_limit, trails_off, words_end_turn
from voicebot.config import Settings
from voicebot.dialog import policy as p
from voicebot.dialog.flow import Node
from voicebot.dialog.reading import Reading
from voicebot.events import AnswerHeld, SpeechEndDetected, TurnJoined  # metrics only
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.service import CallTranscripts
from voicebot.types import Partial, Transcript

# The session's logger: a call's log lines keep the one name operators filter on.
log = logging.getLogger("voicebot.call.session")
# Beyond the voiced audio the detector still needs: the frame batcher's tick and a frame of jitter.
HOLD_MARGIN_S = 0.04


@dataclass
class _Speech:
    """The caller's speech under way."""

    recognition: UtteranceRecognition
    resampler: StreamResampler  # line rate -> the recogniser's
    start: float  # call time; a joined turn's (its audio comes first)
    began: float  # when this stretch of speech began: the transcript pass's utterance
    pcm: list[bytes] = field(default_factory=list)  # at the recogniser's rate, for a second opinion
    joined_bytes: int | None = None  # a joined turn's audio before this speech (None: not joined)


@dataclass(frozen=True, eq=False)
class EndedTurn:
    """A turn the endpointer ended; its recognition is finishing."""

    recognition: UtteranceRecognition
    start: float
    end: float
    audio: bytes  # the whole turn at the recogniser's rate
    rate: int
    early: bool  # ended by a whole expected phrase, before the hangover
    asked: EarlyOpinion | None  # the second opinion asked at the pause the turn ended in
    asked_fallback: EarlyOpinion | None = None  # the larger model, asked there when that heard nothing
    ended_at: float = field(default_factory=time.monotonic)  # when the endpointer ended it
    alone: bytes | None = None  # a joined turn's last stretch, to be heard on its own if need be

    @property
    def joined(self) -> bool:
        """It holds an earlier turn the caller spoke on after (its audio first)."""
        return self.alone is not None

    def drop_early(self) -> None:
        """The opinions asked at its pause are not wanted (the turn is heard with more)."""
        for early in (self.asked, self.asked_fallback):
            if early is not None:
                early.drop()


class TurnListener:
    """One call's turns, one at a time: the session calls `start`, `feed`, `paused`
    and `end` on the VAD's events. `endpointer` gives the session's endpointer;
    what it decides about a pause goes back through `decided`, the session's
    handling of VAD events, so that a failure there still reaches a human."""

    def __init__(self, call_id: str, services: CallServices, policy: p.Policy, line_rate: int,
                 free: CallTranscripts, tasks: CallTasks, endpointer: Callable[[], Endpointer],
                 decided: Callable[[list[VadEvent]], None]) -> None:
        self._call_id = call_id
        self._services = services
        self._policy = policy
        self._line_rate = line_rate
        self._free = free
        self._tasks = tasks
        self._endpointer = endpointer
        self._decided = decided
        self._speech: _Speech | None = None
        self._timing = turn_timing(services.settings, None)
        self._early: EarlyOpinion | None = None  # asked at a pause of the turn under way
        self._early_fallback: EarlyOpinion | None = None  # the larger model, asked after it
        self._mid_phrase = (0, "")  # the pause the grammar last heard as the middle of a phrase, and its words
        self._other_speech_at = 0  # the pause whose early words showed that phrase to be other speech
        self._unanswered: EndedTurn | None = None  # the last turn, until its reading is answered
        self._joined: set[EndedTurn] = set()  # turns heard again with the speech that followed them
        self._began = asyncio.Event()  # set when speech starts, then replaced

    def start(self, at: float) -> None:
        """Speech began at `at`. A turn without an answer yet that ended no more than
        VOICEBOT_TURN_JOIN_MS before is heard again as one with it, its audio first:
        the caller drew breath ("where is my order … it was due yesterday"), and an
        answer to the first half would talk over the second."""
        self._began.set()
        self._began = asyncio.Event()
        runner = self._services.recogniser(self._policy.language)
        resampler = StreamResampler(self._line_rate, runner.engine.sample_rate, batch=self._line_rate // 10)
        self._speech = speech = _Speech(runner.open(self._policy.listen_context), resampler, at, at)
        if (earlier := self._joinable(at, resampler.out_rate)) is not None:
            before = earlier.audio[: 2 * max(0, int((at - earlier.start) * earlier.rate))]
            speech.recognition.feed(before)
            speech.pcm.append(before)
            speech.start = earlier.start
            speech.joined_bytes = len(before)
            self._joined.add(earlier)
            self._services.events.publish(TurnJoined(self._call_id))
        self._timing = turn_timing(self._services.settings, self._policy.listen_node)
        self._endpointer().set_turn(self._timing.hangover_ms, self._timing.pause_ms)

    def _joinable(self, at: float, rate: int) -> EndedTurn | None:
        earlier, self._unanswered = self._unanswered, None
        s = self._services.settings
        if earlier is None or s.turn_join_ms == 0 or at - earlier.end > s.turn_join_ms / 1000 \
                or earlier.end - earlier.start > s.max_utterance_s / 2 or earlier.rate != rate:
            return None
        return earlier

    def joined(self, turn: EndedTurn) -> bool:
        """Whether the caller spoke on after `turn` before its reading was answered:
        then it is heard with what followed, not alone (its early opinions are dropped)."""
        if turn not in self._joined:
            return False
        self._joined.discard(turn)
        turn.drop_early()
        return True

    async def settled(self) -> None:
        """Returns once the caller is not starting to speak again: with voiced audio
        under way that is too short yet to be called speech (VOICEBOT_VAD_START_MS),
        an answer would talk over a caller who goes on after a short pause ("agent …
        please"). It waits until that audio starts speech (the turn is then joined)
        or could no longer have: at most the start's own length, and only then."""
        left = self._endpointer().starting_in()
        if left is None:
            return
        self._services.events.publish(AnswerHeld(self._call_id))
        with contextlib.suppress(TimeoutError):  # a blip of noise, not speech: answer now
            await asyncio.wait_for(self._began.wait(), left + HOLD_MARGIN_S)

    def answered(self, turn: EndedTurn) -> None:
        """`turn`'s reading goes to the dialog: speech after it is a turn of its own."""
        if self._unanswered is turn:
            self._unanswered = None

    def feed(self, samples: np.ndarray) -> None:
        """The turn's audio at the line rate."""
        if (speech := self._speech) is not None:
            speech.recognition.feed(pcm := speech.resampler.process(samples).tobytes())
            speech.pcm.append(pcm)
            self._free.feed(pcm)

    def paused(self, pause: int) -> None:
        if self._speech is not None:
            self._tasks.spawn(self._paused(self._speech, pause), "turn-pause")

    def end(self, at: float, early: bool = False, pause: int = 0, silence: float = 0.0) -> EndedTurn | None:
        """The turn is over (`pause`: the one it ended in, if any; `silence`: the seconds
        of it the turn waited); None when none was under way."""
        if (speech := self._speech) is None:
            return None
        prompt = self._policy.opinion_prompt
        asked, self._early = self._early, None
        if asked is not None and not asked.fits(pause, prompt):
            asked.drop()
            asked = None
        fallback, self._early_fallback = self._early_fallback, None
        if fallback is not None and (asked is None or not fallback.fits(pause, prompt)):
            fallback.drop()
            fallback = None
        self._services.events.publish(SpeechEndDetected(self._call_id, silence_s=silence))
        self._speech = None
        resampler = speech.resampler
        speech.recognition.feed(pcm := resampler.process(np.zeros(0, np.int16), last=True).tobytes())
        self._free.feed(pcm)
        self._free.ended(speech.began, at, self._policy.language, resampler.out_rate)
        audio = b"".join((*speech.pcm, pcm))
        alone = None if speech.joined_bytes is None else audio[speech.joined_bytes:]
        turn = EndedTurn(speech.recognition, speech.start, at, audio, resampler.out_rate, early, asked, fallback,
                         alone=alone)
        self._unanswered = turn
        return turn

    def abandon(self) -> None:
        """Speech handling failed: the recognition under way is closed unheard."""
        if self._speech is not None:
            self._tasks.spawn(self._speech.recognition.aclose(), "asr-abandoned")
            self._speech = None

    async def result(self, turn: EndedTurn) -> Transcript:
        """The grammar's words for the turn. A joined turn whose whole reading the grammar
        is not sure of alone (Policy.settled) is also heard without the turn it joined, and that
        reading is taken when it holds something the flow knows and is surer: the
        grammar knows whole phrases, so a request said after a stretch it has no words
        for ("hello, is anyone there … I want to speak to a person") is heard only on
        its own. Only then: joins come most where the recognisers are behind (a burst),
        and a second decoding of every joined turn delayed every caller's answer there.
        The last stretch failing alone leaves the whole turn's reading."""
        whole = await turn.recognition.finish()
        if turn.alone is None:
            return whole
        reading = self._policy.read(whole.text, whole.confidence)
        if self._policy.settled(reading):
            return whole
        alone = await self._heard_alone(turn.alone)
        if alone is not None and alone.confidence > whole.confidence \
                and self._policy.read(alone.text, alone.confidence).meaning.intent is not None:
            log.debug("call %r: the joined turn's last stretch heard alone: %.2f over %.2f",
                      self._call_id, alone.confidence, whole.confidence)
            return alone
        return whole

    async def _heard_alone(self, audio: bytes) -> Transcript | None:
        """The grammar's words for a joined turn's last stretch on its own; None if it fails."""
        recognition = self._services.recogniser(self._policy.language).open(self._policy.listen_context)
        recognition.feed(audio)
        try:
            return await recognition.finish()
        except asyncio.CancelledError:  # the call ended meanwhile: its task is not left running
            await recognition.aclose()
            raise
        except Exception as exc:  # the whole turn's reading stands
            log.warning("call %r: the joined turn's last stretch failed alone: %s", self._call_id,
                        type(exc).__name__)
            return None

    async def read(self, result: Transcript, turn: EndedTurn) -> Reading:
        """The grammar's reading, with a free-form engine's opinion where it is unsure
        (`turn.asked`: the one asked at the pause the turn ended in, if any). A reading
        the bot would not act on alone waits for it up to VOICEBOT_SECOND_OPINION_UNSURE_TIMEOUT_S."""
        behind = time.monotonic() - turn.ended_at > BEHIND_S  # the recognisers are behind: a burst
        reading = self._policy.read(result.text, result.confidence)
        opinion, asked = self._services.opinion, turn.asked
        if opinion is None or opinion.language != self._policy.language \
                or not self._policy.wants_second_opinion(reading):
            turn.drop_early()
            return reading
        model, check = opinion.transcriber.model, self._policy.opinion_check(result.text)
        if asked is not None:
            heard = await asked.heard(check)
        else:
            # a reading the bot would not act on alone is worth a longer wait than a reprompt
            budget = None if self._policy.acts_alone(reading) \
                else self._services.settings.second_opinion_unsure_timeout_s
            heard = await opinion.ask(turn.audio, turn.rate, self._policy.opinion_prompt, check=check,
                                      late=lambda words: self._transcribed(turn, words, model), timeout_s=budget,
                                      topics=self._policy.opinion_topics)
        if heard is not None:
            self._transcribed(turn, heard, model)
        last = self._fallback() is None
        reread = reading if heard is None else self._policy.reread(reading, heard, last=last)
        if heard is None or not self._policy.wants_larger(reading, heard):
            # understood; or the second opinion late, busy or failed: no time or room for a larger model
            if turn.asked_fallback is not None:
                turn.asked_fallback.drop()
            return reread
        return await self._ask_fallback(reading, turn, reread, behind, heard, check)

    async def _ask_fallback(self, first: Reading, turn: EndedTurn, so_far: Reading, behind: bool,
                            second: Transcript, check: str) -> Reading:
        """The larger model, when the second opinion left the turn not understood (the
        caller would be asked again) or contradicted the grammar's unsure person: its
        words are read against the grammar's (reading.py). Whisper tiny mishears some
        voices that base hears. Not started while the recognisers are `behind` (the
        grammar's result came late: a burst), where its CPU would delay every caller."""
        fallback = self._fallback()
        if fallback is None or (behind and turn.asked_fallback is None):
            return so_far
        if turn.asked_fallback is not None:
            heard = await turn.asked_fallback.heard(check)
        else:
            heard = await fallback.ask(turn.audio, turn.rate, self._policy.opinion_prompt, check=check,
                                       topics=self._policy.opinion_topics)
        if heard is None:
            return so_far
        self._transcribed(turn, heard, fallback.transcriber.model)
        return self._policy.reread(first, heard, larger=True, second=second)

    def _fallback(self) -> SecondOpinion | None:
        """The larger model, when one serves this call's language."""
        fallback = self._services.fallback
        return fallback if fallback is not None and fallback.language == self._policy.language else None

    def _transcribed(self, turn: EndedTurn, heard: Transcript, model: str) -> None:
        """The transcript pass need not transcribe the turn again (when `model` is its
        own). A joined turn's words span two of the pass's utterances: both are left to it."""
        if not turn.joined:
            self._free.heard(turn.start, heard, model)

    async def _paused(self, speech: _Speech, pause: int) -> None:
        """A short silence mid-utterance: end the turn now if a whole expected phrase was heard."""
        asked = time.monotonic()
        heard = await speech.recognition.partial()
        limit, took = pause_limit(heard, self._timing), time.monotonic() - asked
        log.debug("call %r: pause %d heard in %.0f ms: whole=%s confidence=%.2f -> %s", self._call_id,
                  pause, took * 1000, heard and heard.whole, heard.confidence if heard else 0.0, limit)
        if self._speech is not speech:
            return  # the turn ended while the recogniser was asked
        if limit:
            self._mid_phrase = (pause, heard.text if heard else "")
        elif self._mid_phrase[0] == pause:
            self._mid_phrase = (0, "")
        if limit != 0 and took <= BEHIND_S:
            self._ask_early(pause, heard)
        if limit and pause == self._other_speech_at:
            limit = self._timing.hangover_ms  # asked again in the same pause: still no phrase begun
        if limit is not None:
            self._decided(self._endpointer().decide(pause, limit))

    def _ask_early(self, pause: int, heard: Partial | None) -> None:
        """At a pause the turn may end in: ask the second opinion now when the turn's
        reading so far is one the policy would ask it about (early_opinion.py).
        Only on spare capacity: with the engine holding more than
        VOICEBOT_SECOND_OPINION_EARLY_QUEUE other asks, or the grammar without an
        opinion yet (its decoders busy), it waits for the turn's end as before.
        A grammar that decoded the audio and heard nothing it knows (other speech)
        has an opinion: Whisper is asked at its pause too."""
        opinion, speech, s = self._services.opinion, self._speech, self._services.settings
        if opinion is None or speech is None or not s.second_opinion_early \
                or opinion.language != self._policy.language or (self._early and self._early.pause == pause) \
                or opinion.waiting > s.second_opinion_early_queue or heard is None \
                or not (heard.text.strip() or heard.decoded):
            return
        if not self._policy.wants_second_opinion(self._policy.read(heard.text, heard.confidence)):
            return
        for stale in (self._early, self._early_fallback):
            if stale is not None:
                stale.drop()  # the caller spoke on after the pause it was asked at
        self._early_fallback = None
        prompt, audio = self._policy.opinion_prompt, b"".join(speech.pcm)
        check = self._policy.opinion_check(heard.text)
        answer = self._tasks.spawn(opinion.ask(audio, speech.resampler.out_rate, prompt, check=check,
                                               topics=self._policy.opinion_topics), "early-opinion")
        if answer is not None:
            self._early = EarlyOpinion(pause, prompt, answer, check)
            answer.add_done_callback(partial(self._heard_early, pause))

    def _heard_early(self, pause: int, answer: asyncio.Task[Transcript | None]) -> None:
        """What the early opinion's words do to the pause they were asked at (when it still
        goes on; the endpointer ignores a pause the caller spoke after):
        - no intent: the larger model is asked too, as it would be at the turn's end; and
          where the grammar hears the beginning of a phrase but the words are a fluent
          sentence of another start (turns.another_sentence), the pause is the hangover,
          not the mid-phrase wait;
        - a request the question knows that trails off ("Can I talk to?"): the pause may
          run to the mid-phrase limit, as when the grammar hears a phrase begun (other
          speech that trails off keeps the hangover);
        - a whole, clear request: the pause ends the turn, unless the grammar hears the
          middle of a phrase ("I need to reset ... my password": Whisper's "I need to
          reset" is a whole password request) and the words do not start as the
          grammar's beginning and go on past it (turns.goes_past)."""
        if answer.cancelled() or answer.exception() or self._early is None or self._early.answer is not answer:
            return
        heard = answer.result()
        if heard is None:
            return
        meaning = self._policy.understand(heard.text)
        mid_phrase_at, began = self._mid_phrase
        limit: int | None = None
        if meaning.intent is None:
            if mid_phrase_at == pause and another_sentence(heard.text, heard.confidence, began):
                self._other_speech_at = pause
                limit = self._timing.hangover_ms
            self._ask_fallback_early(pause)
        elif trails_off(heard.text):
            limit = self._timing.mid_phrase_ms
        elif self._services.settings.turn_complete_words and words_end_turn(heard.text, meaning) \
                and (mid_phrase_at != pause or goes_past(heard.text, began)):
            limit = 0
        log.debug("call %r: pause %d early opinion: intent=%s -> %s", self._call_id, pause,
                  meaning.intent is not None, limit)
        if limit is not None:
            self._decided(self._endpointer().decide(pause, limit))

    def _ask_fallback_early(self, pause: int) -> None:
        """On spare capacity only, as the early second opinion (the same queue bound)."""
        fallback, speech = self._services.fallback, self._speech
        if fallback is None or speech is None or fallback.language != self._policy.language \
                or fallback.waiting > self._services.settings.second_opinion_early_queue \
                or (self._early_fallback and self._early_fallback.pause == pause):
            return
        prompt, audio = self._policy.opinion_prompt, b"".join(speech.pcm)
        check = self._early.check if self._early is not None else ""
        answer = self._tasks.spawn(fallback.ask(audio, speech.resampler.out_rate, prompt, check=check,
                                                topics=self._policy.opinion_topics), "early-fallback")
        if answer is not None:
            self._early_fallback = EarlyOpinion(pause, prompt, answer, check)


def turn_timing(s: Settings, node: Node | None) -> TurnTiming:
    """The settings' end-of-turn silences, with the question's own where the flow gives them."""
    timing = TurnTiming(s.vad_hangover_ms, s.turn_complete_ms, s.turn_mid_phrase_ms)
    if node is None:
        return timing
    return timing.overridden(node.hangover_ms, node.complete_ms, node.mid_phrase_ms)


def vad_config(s: Settings) -> VadConfig:
    """The detector's settings; each turn then sets its own silences (`turn_timing`)."""
    turn = turn_timing(s, None)
    return VadConfig(
        aggressiveness=s.vad_aggressiveness, start_ms=s.vad_start_ms,
        hangover_ms=turn.hangover_ms, pause_ms=turn.pause_ms, preroll_ms=s.vad_preroll_ms,
        max_utterance_ms=int(s.max_utterance_s * 1000),
    )
