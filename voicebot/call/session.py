"""One phone call: audio in → VAD → ASR → dialog policy → prompts out → handoff.

The telephony adapter calls `on_media`/`on_dtmf`/`on_mark`/`on_hangup` from its
receive loop (they never block) and awaits `run()`, which owns every task of
the call and returns once the call is over and its record is written. The
caller's turns are heard in listening.py; what a human is told, in handoff_notes.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from voicebot.audio.batch import ENCODINGS, Lane
from voicebot.audio.codecs import decode
from voicebot.audio.vad import (
    Endpointer,
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    VadEvent,
)
from voicebot.call.handoff_notes import HandoffNotes, handoff_event
from voicebot.call.listening import EndedTurn, TurnListener, vad_config
from voicebot.call.media import MediaChannel
from voicebot.call.player import Player, Playout
from voicebot.call.recorder import CallRecorder
from voicebot.call.recording import AudioSink
from voicebot.call.services import CallServices as CallServices  # importers still find it here
from voicebot.call.tasks import CallTasks
from voicebot.config import Settings
from voicebot.dialog import policy as p
from voicebot.errors import EngineError
from voicebot.events import CallAudio, CallEnded, CallError  # metrics only
from voicebot.storage.base import CallRecord
from voicebot.transcript.service import transcripts_for
from voicebot.types import HandoffReason, Source, Utterance

log = logging.getLogger(__name__)


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
        self._vad = SpeechDetector(channel.line_rate, vad_config(s))
        self._lane: Lane | None = None
        self.tasks = CallTasks(f"call {record.call_id!r}")  # every task this call starts
        self._listener = TurnListener(record.call_id, services, self.policy, channel.line_rate, self._free,
                                      self.tasks, self._endpointer, self._on_vad)
        self._notes = HandoffNotes(self.flow, self.policy, self.transcript, s.human_line)
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
            self._listener.abandon()
            self.services.events.publish(CallError(self.recorder.call_id, "internal"))
            self.hand_over(HandoffReason.SYSTEM_ERROR)

    def _handle_vad(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._cancel_timer()
                self._listener.start(event.at)
                self._events.put_nowait(p.SpeechBegan())
            elif isinstance(event, SpeechAudio):
                self._listener.feed(event.samples)
            elif isinstance(event, SpeechEnded):
                self._speech_ended(event.at, event.early, event.pause, event.silence)
            elif isinstance(event, SpeechPaused):
                self._listener.paused(event.pause)

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
                    self.services.events.publish(self._notes.decided(self.recorder.record))
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
                await self.recorder.finished(action.outcome, summary=self._notes.summary(None))
                await self.channel.end("completed")
                return True
        return False

    def _recording_consent(self, answer: str) -> None:
        self.tasks.spawn(self.recorder.recording_consent(answer), "record-consent")
        recordings = self.services.recordings
        if answer == "given" and recordings is not None and self._audio_kept is None:
            self._audio_kept = recordings.start(self.recorder.call_id, self.channel.line_rate)

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

    async def _hand_off(self, reason: HandoffReason, queue: str = "") -> None:
        context = self._notes.context(reason, queue)
        await self.recorder.handed_off(context)
        await self.channel.send_event(handoff_event(context))
        await self.channel.end(f"handoff:{reason}")
        log.info("call %r handed off: %s", self.recorder.call_id, reason)

    async def _shutdown(self) -> None:
        if self._lane is not None:
            self._lane.close()
        self._cancel_timer()
        await self._player.close()
        self._speech_ended(self._call_time())  # ends speech still open when the call ended
        self._free.close()
        if self._audio_kept is not None:
            await self._audio_kept.close()
        await self.tasks.settle(self.services.settings.asr_timeout_s + 1)  # recognitions, lookups
        await self.tasks.close()
        if self.policy.survey == p.SURVEY_OFFERED:  # hung up on the survey: skipped
            await self.recorder.survey("hung_up", None)
        outcome = self.policy.outcome_if_left()
        await self.recorder.ended(outcome, self._notes.summary(self.policy.handoff_reason))
        self.services.events.publish(CallAudio(self.recorder.call_id, self._call_time()))
        self.services.events.publish(CallEnded(self.recorder.call_id, self.recorder.record.outcome))

    # --- speech ----------------------------------------------------------------------
    def _endpointer(self) -> Endpointer:
        return self._lane.endpointer if self._lane is not None else self._vad.endpointer

    def _speech_ended(self, at: float, early: bool = False, pause: int = 0, silence: float = 0.0) -> None:
        turn = self._listener.end(at, early, pause, silence)
        if turn is not None:
            self.tasks.spawn(self._recognise(turn), "recognise")

    async def _recognise(self, turn: EndedTurn) -> None:
        try:
            result = await self._listener.result(turn)
        except EngineError as exc:
            if self._listener.joined(turn):
                return  # the joined turn's own recognition reports
            log.error("call %r: recognition failed: %s", self.recorder.call_id, exc)
            self._events.put_nowait(p.Failed(str(exc)))
            self.services.events.publish(CallError(self.recorder.call_id, "recognition"))
            return
        if self._listener.joined(turn):
            return
        reading = await self._listener.read(result, turn)
        await self._listener.settled()
        if self._listener.joined(turn):
            return
        self._listener.answered(turn)
        said = reading.heard or result  # the second opinion's words when they decided
        u = Utterance(said.text, said.confidence, turn.start, turn.end, Source.SPEECH,
                      reading.meaning.intent, said.words)
        await self._record_utterance(u, turn.early)
        self._events.put_nowait(p.Heard(u, reading))

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


def _policy_config(s: Settings) -> p.PolicyConfig:
    return p.PolicyConfig(
        confidence_threshold=s.confidence_threshold, low_confidence_turns=s.low_confidence_turns,
        no_input_turns=s.no_input_turns, unresolved_turns=s.unresolved_turns,
        no_input_timeout_s=s.no_input_timeout_s, disclosure_text=s.disclosure_text,
        opt_out_key=s.opt_out_key, ask_recording_consent=s.recording == "consent",
    )

