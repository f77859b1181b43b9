"""Live call metrics, from what calls already announce: the event bus and the
writes to the call store. The call session knows nothing about metrics.

`CallObserver.observe(store)` wraps the store the calls write to: every write
is counted first, then passed on unchanged (a failing store loses no metric,
and a failing metric never loses a write). Anything else is delegated as is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from voicebot.events import (
    AnswerHeld,
    CallAudio,
    CallEnded,
    CallError,
    CallEvent,
    SpeechEndDetected,
    TurnJoined,
)
from voicebot.metrics import Metrics
from voicebot.storage.base import CallRecord, CallStore
from voicebot.storage.staff import Database
from voicebot.types import Source, Utterance

log = logging.getLogger(__name__)


@dataclass
class _Call:
    language: str = ""
    unrecognised: list[float] = field(default_factory=list)  # speech ends awaiting a result
    unanswered: list[float] = field(default_factory=list)  # speech ends awaiting a prompt
    speech_s: float = 0.0
    audio_s: float = 0.0


class CallObserver:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._calls: dict[str, _Call] = {}

    def observe(self, store: CallStore) -> CallStore:
        return ObservedStore(store, self)

    def _call(self, call_id: str) -> _Call:
        return self._calls.setdefault(call_id, _Call())

    # --- the bus (synchronous, never blocks) ------------------------------------------
    def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, SpeechEndDetected):
            if event.silence_s > 0:
                self.metrics.turn_end_silence.observe(event.silence_s)
            call = self._call(event.call_id)
            call.unrecognised.append(event.at)
            call.unanswered.append(event.at)
        elif isinstance(event, TurnJoined):
            self.metrics.turns_joined.inc()
            call = self._call(event.call_id)
            for ends in (call.unrecognised, call.unanswered):
                if ends:
                    ends.pop()  # that speech end has no result of its own: the joined turn's is timed
        elif isinstance(event, AnswerHeld):
            self.metrics.answers_held.inc()
        elif isinstance(event, CallAudio):
            self._call(event.call_id).audio_s = event.seconds
        elif isinstance(event, CallError):
            self.metrics.errors.labels(event.error).inc()
            unrecognised = self._call(event.call_id).unrecognised
            if event.error == "recognition" and unrecognised:
                unrecognised.pop(0)  # that speech gets no result: keep the rest paired
        elif isinstance(event, CallEnded):
            call = self._calls.pop(event.call_id, _Call())
            self.metrics.outcomes.labels(event.outcome or "unknown").inc()
            if call.audio_s > 0:
                self.metrics.speech_ratio.observe(min(1.0, call.speech_s / call.audio_s))

    # --- store writes ---------------------------------------------------------------
    def created(self, record: CallRecord) -> None:
        self._call(record.call_id).language = record.language

    def updated(self, call_id: str, fields: dict[str, Any]) -> None:
        if fields.get("disclosure_started_at") is not None:
            self.metrics.disclosures_played.inc()
        if fields.get("disclosure_confirmed_by"):
            self.metrics.disclosures_confirmed.labels(fields["disclosure_confirmed_by"]).inc()
        if survey := fields.get("survey"):
            self._survey(survey, fields.get("csat"))

    def _survey(self, status: str, rating: int | None) -> None:
        if status == "offered":
            self.metrics.csat_offered.inc()
            return
        self.metrics.csat_results.labels(status).inc()
        if rating is not None:
            self.metrics.csat_rating.observe(rating)

    def utterance(self, call_id: str, at: float, u: Utterance) -> None:
        if u.source is not Source.SPEECH:
            return
        call = self._call(call_id)
        self.metrics.confidence.labels(call.language or "unknown").observe(u.confidence)
        call.speech_s += max(0.0, u.end - u.start)
        if call.unrecognised:  # results come back in the order the speech ended
            self.metrics.recognition.observe(max(0.0, at - call.unrecognised.pop(0)))

    def prompt(self, call_id: str, prompt: dict[str, Any]) -> None:
        """A prompt answers the caller's latest speech that ended before it began.
        Speech that ended while this prompt played (over the disclosure, which cannot
        be interrupted) has no response time: the caller was hearing the bot."""
        call = self._call(call_id)
        started = float(prompt.get("started_at") or 0.0)
        finished = float(prompt.get("finished_at") or started)
        before = [t for t in call.unanswered if t <= started]
        if before:
            self.metrics.response.observe(started - max(before))
        call.unanswered = [t for t in call.unanswered if t > finished]


class ObservedStore:
    """A CallStore that tells the observer about each write, then makes it."""

    def __init__(self, inner: CallStore, observer: CallObserver) -> None:
        self.inner = inner
        self._observer = observer

    def __getattr__(self, name: str) -> Any:  # open, close, get, erase_*, and later additions
        return getattr(self.inner, name)

    async def create(self, record: CallRecord) -> None:
        self._safely(self._observer.created, record)
        await self.inner.create(record)

    async def update(self, call_id: str, **fields: Any) -> None:
        self._safely(self._observer.updated, call_id, fields)
        await self.inner.update(call_id, **fields)

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        self._safely(self._observer.utterance, call_id, at, utterance)
        await self.inner.add_utterance(call_id, at, utterance)

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        self._safely(self._observer.prompt, call_id, prompt)
        await self.inner.add_prompt(call_id, at, prompt)

    @staticmethod
    def _safely(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # metrics must never cost a caller their record
            log.exception("metrics: observing a store write failed")


class DeskGauges:
    """The staff desk's queue, read from its table when Prometheus scrapes."""

    def __init__(self, metrics: Metrics, desk: Database) -> None:
        self.metrics = metrics
        self.desk = desk
        self._claims_seen = time.time()  # claims after this are observed once

    async def refresh(self) -> None:
        now = time.time()
        rows = await self.desk.rows(
            "SELECT status, COUNT(*) AS n, MIN(decided_at) AS oldest FROM desk_transfers "
            "WHERE status IN ('waiting', 'callback') GROUP BY status")
        counts = {r["status"]: r["n"] for r in rows}
        for status in ("waiting", "callback"):
            self.metrics.desk_queue.labels(status).set(counts.get(status, 0))
        oldest = min((r["oldest"] for r in rows), default=None)
        self.metrics.desk_oldest.set(now - oldest if oldest is not None else 0.0)
        claims = await self.desk.rows(
            "SELECT claimed_at - decided_at AS wait, claimed_at FROM desk_transfers "
            "WHERE claimed_at > ? ORDER BY claimed_at", (self._claims_seen,))
        for claim in claims:
            self.metrics.desk_wait.observe(max(0.0, claim["wait"]))
            self._claims_seen = claim["claimed_at"]
