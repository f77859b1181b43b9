"""One phone call: audio in → VAD → ASR → dialog policy → prompts out → handoff.

The telephony adapter calls `on_media`/`on_dtmf`/`on_mark`/`on_hangup` from its
receive loop (they never block) and awaits `run()`, which owns every task of
the call and returns once the call is over and its record is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from voicebot.asr.runner import AsrRunner, UtteranceRecognition
from voicebot.audio.batch import ENCODINGS, FrameBatcher, Lane
from voicebot.audio.codecs import decode
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import (
    Endpointer,
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    VadConfig,
    VadEvent,
)
from voicebot.call.early_opinion import BEHIND_S, EarlyOpinion
from voicebot.call.events import (  # metrics only
    CallAudio,
    CallEnded,
    CallError,
    CallEventBus,
    HandoffDecided,
    SpeechEndDetected,
)
from voicebot.call.lookup import LookupClient
from voicebot.call.media import MediaChannel
from voicebot.call.player import Player, Playout
from voicebot.call.recorder import CallRecorder
from voicebot.call.recording import AudioRecorder, AudioSink
from voicebot.call.tasks import CallTasks
from voicebot.call.turns import TurnTiming, pause_limit, words_end_turn
from voicebot.config import Settings
from voicebot.dialog import policy as p
from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.reading import Reading
from voicebot.errors import EngineError
from voicebot.handoff.context import HandoffContext, summarise
from voicebot.storage.base import CallRecord, CallStore
from voicebot.transcript.opinion import SecondOpinion
from voicebot.transcript.service import TranscriptService, transcripts_for
from voicebot.tts.prompts import PromptCache
from voicebot.types import HandoffReason, Partial, Source, Transcript, Utterance

log = logging.getLogger(__name__)


@dataclass
class CallServices:
    """Per-process parts every call shares; built once by the app."""

    settings: Settings
    asr: AsrRunner  # the default language's recogniser
    prompts: PromptCache
    store: CallStore
    flow: Flow  # swapped whole on reload; a call keeps the flow it started with
    events: CallEventBus = field(default_factory=CallEventBus)
    frames: FrameBatcher | None = None  # VAD front end shared by all calls (None: per call)
    transcripts: TranscriptService | None = None  # background free-form pass (None: off)
    recognisers: dict[str, AsrRunner] = field(default_factory=dict)  # language -> recogniser
    lookups: LookupClient | None = None  # a flow's lookup nodes
    opinion: SecondOpinion | None = None  # a free-form engine asked when the grammar is unsure
    recordings: AudioRecorder | None = None  # the caller's audio, with their consent (None: off)

    def recogniser(self, language: str) -> AsrRunner:
        return self.recognisers.get(language, self.asr)

    @property
    def languages(self) -> tuple[str, ...]:
        """The flow's languages this server has a recogniser for."""
        have = set(self.recognisers) | {self.asr.engine.language}
        return tuple(code for code in self.flow.languages if code in have)


class _HungUp:
    pass


class CallSession:
    """`hand_over` set: the call hears the disclosure, then goes straight to a
    human for that reason (over capacity, shutting down); no speech is recognised."""

    def __init__(self, record: CallRecord, channel: MediaChannel, services: CallServices,
                 hand_over: HandoffReason | None = None) -> None:
        s = services.settings
        self.services = services
        self.channel = channel
        self.flow = services.flow
        self.policy = p.Policy(self.flow, record.language or s.language, _policy_config(s))
        self.recorder = CallRecorder(services.store, record)
        self.transcript: list[Utterance] = []
        self._free = transcripts_for(services.transcripts, record.call_id)
        self._events: asyncio.Queue[p.Event | _HungUp] = asyncio.Queue()
        self._vad = SpeechDetector(channel.line_rate, _vad_config(s))
        self._lane: Lane | None = None
        self._utterance: tuple[UtteranceRecognition, StreamResampler, float] | None = None
        self._turn = _turn_timing(s, None)
        self._utterance_pcm: list[bytes] = []  # at the recogniser's rate, for a second opinion
        self._early: EarlyOpinion | None = None  # asked at a pause of the turn under way
        self._mid_phrase = 0  # the pause the grammar last heard as the middle of a phrase
        self.tasks = CallTasks(f"call {record.call_id!r}")  # every task this call starts
        self._timer: asyncio.Task[None] | None = None
        self._player = Player(channel, self._audio_for, s.mark_grace_s,
                              self._on_played, self._on_prompt_failed, self.tasks.spawn)
        self._hung_up = False
        self._samples_in = 0
        self._hand_over = hand_over
        self._audio_kept: AudioSink | None = None  # the caller allowed recording
        self._last_media = self._began = time.monotonic()

    # --- inbound, called by the adapter ----------------------------------------------
    def on_media(self, data: bytes, encoding: str) -> None:
        """Line audio as the gateway sent it ("mulaw" or "pcm16" at line_rate)."""
        batcher = self.services.frames
        if batcher is None:
            self.on_audio(decode(data, encoding))
            return
        if not self._audio_arrived():
            return
        if self._audio_kept is not None:  # as 16-bit PCM, whatever the line's encoding
            self._audio_kept.write(data if encoding == "pcm16" else decode(data, encoding).astype("<i2").tobytes())
        if self._lane is None:
            self._lane = batcher.lane(self.channel.line_rate, encoding, self._vad.config, self._on_vad)
        self._samples_in += len(data) // ENCODINGS[encoding]
        self._lane.push(data)

    def on_audio(self, samples: np.ndarray) -> None:
        if not self._audio_arrived():
            return
        if self._audio_kept is not None:
            self._audio_kept.write(samples.astype("<i2").tobytes())
        self._samples_in += samples.size
        self._on_vad(self._vad.push(samples))

    def _audio_arrived(self) -> bool:
        """Note that audio came; False when there is nothing more to recognise
        (the watchdog hands the call over)."""
        self._last_media = time.monotonic()
        return self._hand_over is None and self._call_time() <= self.services.settings.max_call_s

    def _on_vad(self, events: list[VadEvent]) -> None:
        try:
            self._handle_vad(events)
        except Exception:  # e.g. the resampler or the engine stream: fail to a human, not to silence
            log.exception("call %r: speech handling failed", self.recorder.call_id)
            if self._utterance is not None:
                self.tasks.spawn(self._utterance[0].aclose(), "asr-abandoned")
                self._utterance = None
            self.services.events.publish(CallError(self.recorder.call_id, "internal"))
            self.hand_over(HandoffReason.SYSTEM_ERROR)

    def _handle_vad(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._speech_started(event.at)
            elif isinstance(event, SpeechAudio) and self._utterance is not None:
                recognition, resampler, _ = self._utterance
                recognition.feed(pcm := resampler.process(event.samples).tobytes())
                self._utterance_pcm.append(pcm)
                self._free.feed(pcm)
            elif isinstance(event, SpeechEnded):
                self._speech_ended(event.at, event.early, event.pause)
            elif isinstance(event, SpeechPaused) and self._utterance is not None:
                self.tasks.spawn(self._paused(self._utterance[0], event.pause), "turn-pause")

    def on_dtmf(self, digit: str) -> None:
        if self._lane is not None:
            self._lane.drain()  # speech before the key press comes first
        self._cancel_timer()
        now = self._call_time()
        u = Utterance(digit, 1.0, now, now, Source.DTMF, "human" if digit == "0" else None)
        self.tasks.spawn(self._record_utterance(u), "record-key")
        opts_out = self.policy.opts_out(digit)  # named in the disclosure (privacy)
        if not (opts_out and self.policy.state is p.State.SURVEYING):  # no answer to the survey
            self._events.put_nowait(p.KeyPressed(digit))
        if opts_out:
            self.hand_over(HandoffReason.OPTED_OUT)

    def on_mark(self, name: str) -> None:
        if self._lane is not None:
            self._lane.drain()  # audio that came before the echo is heard first, as it arrived
        self._player.mark_echoed(name)

    def hand_over(self, reason: HandoffReason) -> None:
        """Send the caller to a human as soon as the policy allows (after the
        disclosure; a handoff already under way keeps its own reason)."""
        if self._hand_over is None:
            self._hand_over = reason
            self._events.put_nowait(p.HandOver(reason))

    def on_hangup(self) -> None:
        if not self._hung_up:
            self._hung_up = True
            for event in self._lane.end() if self._lane is not None else self._vad.flush():
                if isinstance(event, SpeechEnded):
                    self._speech_ended(event.at)
            self._events.put_nowait(_HungUp())

    # --- the call --------------------------------------------------------------------
    async def run(self) -> None:
        await self.recorder.started(self.policy.disclosure_text())
        watchdog = self.tasks.spawn(self._watchdog(), "call-watchdog")
        try:
            await self._perform(self.policy.start())
            if self._hand_over is not None:
                self._events.put_nowait(p.HandOver(self._hand_over))
            while not self._hung_up or not self._events.empty():
                event = await self._events.get()
                if isinstance(event, _HungUp):
                    break
                if await self._step(event):
                    break
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await self._shutdown()

    async def _watchdog(self) -> None:
        """Limits no caller should hit: the call's length, audio that stopped arriving."""
        s = self.services.settings
        while True:
            now = time.monotonic()
            if now - self._began >= s.max_call_s or self._call_time() > s.max_call_s:
                self.hand_over(HandoffReason.MAX_DURATION)
                return
            if now - self._last_media >= s.idle_timeout_s:
                self.hand_over(HandoffReason.MEDIA_TIMEOUT)
                return
            wake = min(self._began + s.max_call_s, self._last_media + s.idle_timeout_s)
            await asyncio.sleep(max(0.05, wake - now))

    async def _step(self, event: p.Event) -> bool:
        try:
            return await self._perform(self.policy.step(event))
        except Exception:  # a bug must still end with a human, never in silence
            log.exception("call %r: internal error", self.recorder.call_id)
            if self.policy.state is p.State.DONE:
                return True
            self.services.events.publish(CallError(self.recorder.call_id, "internal"))
            self._events.put_nowait(p.Failed("internal error"))
            return False

    async def _perform(self, actions: list[p.Action]) -> bool:
        """Carry out the policy's actions; True when the call is over."""
        for action in actions:
            if isinstance(action, p.Say):
                self._cancel_timer()
                if action.name == "handoff":
                    self._announce_handoff()
                self._player.play(action)
            elif isinstance(action, p.StopPlayback):
                await self._player.stop()
            elif isinstance(action, p.ExpectInput):
                self._start_timer(action.timeout_s)
            elif isinstance(action, p.Lookup):
                self.tasks.spawn(self._lookup(action), "lookup")
            elif isinstance(action, p.Survey):
                await self.recorder.survey(action.status, action.rating)
            elif isinstance(action, p.RecordingConsent):
                self._recording_consent(action.answer)
            elif isinstance(action, p.Handoff):
                await self._hand_off(action.reason, action.queue)
                return True
            elif isinstance(action, p.End):
                await self.recorder.finished(action.outcome, summary=self._summary(None))
                await self.channel.end("completed")
                return True
        return False

    def _recording_consent(self, answer: str) -> None:
        self.tasks.spawn(self.recorder.recording_consent(answer), "record-consent")
        recordings = self.services.recordings
        if answer == "given" and recordings is not None and self._audio_kept is None:
            self._audio_kept = recordings.start(self.recorder.call_id, self.channel.line_rate)

    def _announce_handoff(self) -> None:
        reason = self.policy.handoff_reason
        assert reason is not None
        record = self.recorder.record
        self.services.events.publish(HandoffDecided(
            record.call_id, reason, self._summary(reason), record.caller, record.language,
            tuple(self.transcript)))

    async def _lookup(self, action: p.Lookup) -> None:
        lookups = self.services.lookups
        if lookups is None:
            self._events.put_nowait(p.LookupDone(False, detail="lookups are not available"))
            return
        context = {"call_id": self.recorder.call_id, "language": self.policy.language, "node": self.policy.node}
        done = await lookups.run(action, context)
        if not done.ok:
            log.warning("call %s: lookup at node %s failed: %s", self.recorder.call_id, self.policy.node,
                        done.detail)
        self._events.put_nowait(done)

    def _target(self, queue: str) -> str:
        queues = self.flow.queues
        target = queues.get(queue) if queue else next(iter(queues.values()), "")
        return target or self.services.settings.human_line

    async def _hand_off(self, reason: HandoffReason, queue: str = "") -> None:
        target = self._target(queue)
        context = HandoffContext(reason, target, tuple(self.transcript), self._summary(reason))
        await self.recorder.handed_off(context)
        await self.channel.send_event(_handoff_event(context))
        await self.channel.end(f"handoff:{reason}")
        log.info("call %r handed off: %s", self.recorder.call_id, reason)

    async def _shutdown(self) -> None:
        if self._lane is not None:
            self._lane.close()
        self._cancel_timer()
        await self._player.close()
        if self._utterance is not None:  # speech still open when the call ended
            self._speech_ended(self._call_time())
        self._free.close()
        if self._audio_kept is not None:
            await self._audio_kept.close()
        await self.tasks.settle(self.services.settings.asr_timeout_s + 1)  # recognitions, lookups
        await self.tasks.close()
        if self.policy.survey == p.SURVEY_OFFERED:  # hung up on the survey: skipped
            await self.recorder.survey("hung_up", None)
        outcome = self.policy.outcome_if_left()
        await self.recorder.ended(outcome, self._summary(self.policy.handoff_reason))
        self.services.events.publish(CallAudio(self.recorder.call_id, self._call_time()))
        self.services.events.publish(CallEnded(self.recorder.call_id, self.recorder.record.outcome))

    def _summary(self, reason: HandoffReason | None) -> str:
        labels = {name: intent.label for name, intent in self.flow.intents.items()}
        summary = summarise(tuple(self.transcript), reason, self.policy.answered, labels)
        if reason is HandoffReason.LOOKUP_FAILED and self.policy.lookup_error:
            summary += f" The lookup failed: {self.policy.lookup_error}."
        return summary

    # --- speech ----------------------------------------------------------------------
    def _speech_started(self, at: float) -> None:
        self._cancel_timer()
        runner = self.services.recogniser(self.policy.language)
        resampler = StreamResampler(self.channel.line_rate, runner.engine.sample_rate,
                                    batch=self.channel.line_rate // 10)
        self._utterance = (runner.open(self.policy.listen_context), resampler, at)
        self._turn = _turn_timing(self.services.settings, self.policy.listen_node)
        self._endpointer().set_turn(self._turn.hangover_ms, self._turn.pause_ms)
        self._utterance_pcm = []
        self._events.put_nowait(p.SpeechBegan())

    async def _paused(self, recognition: UtteranceRecognition, pause: int) -> None:
        """A short silence mid-utterance: end the turn now if a whole expected phrase was heard."""
        asked = time.monotonic()
        heard = await recognition.partial()
        limit, took = pause_limit(heard, self._turn), time.monotonic() - asked
        log.debug("call %r: pause %d heard in %.0f ms: whole=%s confidence=%.2f -> %s", self.recorder.call_id,
                  pause, took * 1000, heard and heard.whole, heard.confidence if heard else 0.0, limit)
        if self._utterance is None or self._utterance[0] is not recognition:
            return  # the turn ended while the recogniser was asked
        if limit:
            self._mid_phrase = pause
        elif self._mid_phrase == pause:
            self._mid_phrase = 0
        if limit != 0 and took <= BEHIND_S:
            self._ask_early(pause, heard)
        if limit is not None:
            self._on_vad(self._endpointer().decide(pause, limit))

    def _ask_early(self, pause: int, heard: Partial | None) -> None:
        """At a pause the turn may end in: ask the second opinion now when the turn's
        reading so far is one the policy would ask it about (early_opinion.py).
        Only on spare capacity: with the engine busy, or the grammar without an
        opinion yet (its decoders busy), it waits for the turn's end as before."""
        opinion, utterance = self.services.opinion, self._utterance
        if opinion is None or utterance is None or not self.services.settings.second_opinion_early \
                or opinion.language != self.policy.language or (self._early and self._early.pause == pause) \
                or not opinion.idle or heard is None or not heard.text.strip():
            return
        if not self.policy.wants_second_opinion(self.policy.read(heard.text, heard.confidence)):
            return
        if self._early is not None:
            self._early.drop()  # the caller spoke on after the pause it was asked at
        prompt, audio = self.policy.opinion_prompt, b"".join(self._utterance_pcm)
        answer = self.tasks.spawn(opinion.ask(audio, utterance[1].out_rate, prompt), "early-opinion")
        if answer is not None:
            self._early = EarlyOpinion(pause, prompt, answer)
            answer.add_done_callback(partial(self._heard_early, pause))

    def _heard_early(self, pause: int, answer: asyncio.Task[Transcript | None]) -> None:
        """The early opinion's words are a whole, clear request: the pause ends the turn
        (when it still goes on; the endpointer ignores a pause the caller spoke after),
        unless the grammar hears the middle of a phrase ("I need to reset ... my password":
        Whisper's "I need to reset" is a whole password request)."""
        if not self.services.settings.turn_complete_words or answer.cancelled() or answer.exception() \
                or self._early is None or self._early.answer is not answer or self._mid_phrase == pause:
            return
        heard = answer.result()
        if heard is not None and words_end_turn(heard.text, self.policy.understand(heard.text)):
            self._on_vad(self._endpointer().decide(pause, 0))

    def _endpointer(self) -> Endpointer:
        return self._lane.endpointer if self._lane is not None else self._vad.endpointer

    def _speech_ended(self, at: float, early: bool = False, pause: int = 0) -> None:
        if self._utterance is None:
            return
        asked, self._early = self._early, None
        if asked is not None and not asked.fits(pause, self.policy.opinion_prompt):
            asked.drop()
            asked = None
        self.services.events.publish(SpeechEndDetected(self.recorder.call_id))
        recognition, resampler, start = self._utterance
        self._utterance = None
        recognition.feed(pcm := resampler.process(np.zeros(0, np.int16), last=True).tobytes())
        self._free.feed(pcm)
        self._free.ended(start, at, self.policy.language, resampler.out_rate)
        audio, self._utterance_pcm = b"".join((*self._utterance_pcm, pcm)), []
        self.tasks.spawn(self._recognise(recognition, start, at, audio, resampler.out_rate, early, asked),
                         "recognise")

    async def _recognise(self, recognition: UtteranceRecognition, start: float, end: float,
                         audio: bytes, rate: int, early: bool, asked: EarlyOpinion | None = None) -> None:
        try:
            result = await recognition.finish()
        except EngineError as exc:
            log.error("call %r: recognition failed: %s", self.recorder.call_id, exc)
            self._events.put_nowait(p.Failed(str(exc)))
            self.services.events.publish(CallError(self.recorder.call_id, "recognition"))
            return
        reading = await self._read(result, audio, rate, start, asked)
        said = reading.heard or result  # the second opinion's words when they decided
        u = Utterance(said.text, said.confidence, start, end, Source.SPEECH,
                      reading.meaning.intent, said.words)
        await self._record_utterance(u, early)
        self._events.put_nowait(p.Heard(u, reading))

    async def _read(self, result: Transcript, audio: bytes, rate: int, start: float,
                    asked: EarlyOpinion | None) -> Reading:
        """The grammar's reading, with a free-form engine's opinion where it is unsure
        (`asked`: the one asked at the pause the turn ended in, if any)."""
        reading = self.policy.read(result.text, result.confidence)
        opinion = self.services.opinion
        if opinion is None or opinion.language != self.policy.language \
                or not self.policy.wants_second_opinion(reading):
            if asked is not None:
                asked.drop()
            return reading
        model = opinion.transcriber.model
        if asked is not None:
            heard = await asked.answer
        else:
            heard = await opinion.ask(audio, rate, self.policy.opinion_prompt,
                                      late=lambda words: self._free.heard(start, words, model))
        if heard is None:
            return reading
        self._free.heard(start, heard, model)  # not transcribed twice
        return self.policy.reread(reading, heard)

    async def _record_utterance(self, u: Utterance, early: bool = False) -> None:
        self.transcript.append(u)
        await self.recorder.utterance(u)
        if u.source is Source.SPEECH:
            await self.channel.send_event({
                "event": "transcript", "text": u.text, "confidence": round(u.confidence, 3),
                "start": round(u.start, 3), "end": round(u.end, 3), "intent": u.intent,
                "early": early,  # the turn ended on a whole expected phrase, before the hangover
            })

    # --- prompts ---------------------------------------------------------------------
    async def _audio_for(self, say: p.Say) -> np.ndarray:
        if say.name == "disclosure":
            await self.recorder.disclosure_starting()
        await self.channel.send_event({"event": "prompt", "name": say.name, "text": say.text})
        return await self.services.prompts.get(self.flow.voice(self.policy.language), say.text,
                                               self.channel.line_rate)

    def _on_played(self, playout: Playout) -> None:
        self.tasks.spawn(self.recorder.prompt_played(playout), "record-prompt")
        interrupted = playout.confirmed_by == "interrupted"
        self._events.put_nowait(p.PromptDone(playout.say.prompt_id, interrupted))

    def _on_prompt_failed(self, say: p.Say, exc: BaseException) -> None:
        log.error("call %r: prompt %s failed: %s", self.recorder.call_id, say.name, exc)
        self._events.put_nowait(p.Failed(f"prompt {say.name}: {exc}"))
        self.services.events.publish(CallError(self.recorder.call_id, "prompt"))

    # --- helpers ---------------------------------------------------------------------
    def _start_timer(self, seconds: float) -> None:
        self._cancel_timer()

        async def expire() -> None:
            await asyncio.sleep(seconds)
            self._events.put_nowait(p.NoInput())

        self._timer = self.tasks.spawn(expire(), "no-input")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _call_time(self) -> float:
        """Seconds of caller audio received: the clock utterance times use."""
        return self._samples_in / self.channel.line_rate


def _handoff_event(ctx: HandoffContext) -> dict[str, object]:
    from voicebot.storage.base import utterance_json

    return {
        "event": "handoff", "reason": str(ctx.reason), "target": ctx.target,
        "summary": ctx.summary, "transcript": [utterance_json(u) for u in ctx.transcript],
    }


def _policy_config(s: Settings) -> p.PolicyConfig:
    return p.PolicyConfig(
        confidence_threshold=s.confidence_threshold, low_confidence_turns=s.low_confidence_turns,
        no_input_turns=s.no_input_turns, unresolved_turns=s.unresolved_turns,
        no_input_timeout_s=s.no_input_timeout_s, disclosure_text=s.disclosure_text,
        opt_out_key=s.opt_out_key, ask_recording_consent=s.recording == "consent",
    )


def _vad_config(s: Settings) -> VadConfig:
    turn = _turn_timing(s, None)
    return VadConfig(
        aggressiveness=s.vad_aggressiveness, start_ms=s.vad_start_ms,
        hangover_ms=turn.hangover_ms, pause_ms=turn.pause_ms, preroll_ms=s.vad_preroll_ms,
        max_utterance_ms=int(s.max_utterance_s * 1000),
    )


def _turn_timing(s: Settings, node: Node | None) -> TurnTiming:
    """The settings' end-of-turn silences, with the question's own where the flow gives them."""
    timing = TurnTiming(s.vad_hangover_ms, s.turn_complete_ms, s.turn_mid_phrase_ms)
    if node is None:
        return timing
    return timing.overridden(node.hangover_ms, node.complete_ms, node.mid_phrase_ms)
