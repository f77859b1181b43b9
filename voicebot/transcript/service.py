"""The background transcript pass: per-call audio, one bounded queue, its own workers.

The call session hands each VAD-cut utterance's audio to its `CallTranscripts`
(`feed` as it arrives, `ended` when the VAD ends it). With
VOICEBOT_TRANSCRIPT_CALLS=all every utterance is queued at once; with
`handoff` the call keeps its utterances (at most HISTORY_S seconds) and
queues them all when the dialog decides to hand over (HandoffDecided on the
call event bus), then every later one. Nothing here is awaited by the call:
`feed`/`ended`/`close` only copy bytes and queue, so no decision ever waits.

Cost is bounded: `workers` transcribers (each its own process, lower
priority than the decision workers) take jobs from one queue of at most
`queue_limit` jobs, handed-over calls first. A job that does not fit is not
lost silently: it is delivered as `skipped`, so the desk says why there is no
free-form text for that utterance.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from voicebot.audio.resample import resample
from voicebot.events import CallEvent, HandoffDecided
from voicebot.transcript.base import FreeText
from voicebot.transcript.worker import Transcriber
from voicebot.types import Transcript

log = logging.getLogger("voicebot.transcript")
MODES = ("all", "handoff")
HISTORY_S = 120.0  # audio a `handoff`-mode call keeps for a possible handoff (≤ 3.8 MB)
_HANDED_OVER, _ROUTINE = 0, 1  # queue priorities


class TranscriptSink(Protocol):
    async def deliver(self, call_id: str, text: FreeText, handed_over: bool) -> None:
        """Store and announce one result; `handed_over`: the call went to a person."""

    async def handed_over(self, call_id: str, texts: list[FreeText]) -> None:
        """The call was handed over after these results were delivered (mode `all`)."""


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    call_id: str = field(compare=False)
    start: float = field(compare=False)
    end: float = field(compare=False)
    pcm: bytes = field(compare=False)
    rate: int = field(compare=False)
    handed_over: bool = field(compare=False)
    queued_at: float = field(compare=False, default_factory=time.monotonic)


class JobQueue:
    """A bounded priority queue: a full queue refuses a routine job, and makes
    room for a handed-over one by evicting the newest routine job."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[_Job] = []
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, job: _Job) -> _Job | None:
        """Queue `job`; returns the job that did not fit (`job` or an evicted one)."""
        dropped = None
        if len(self._heap) >= self.limit:
            routine = [j for j in self._heap if j.priority == _ROUTINE]
            if job.priority == _ROUTINE or not routine:
                return job
            dropped = max(routine, key=lambda j: j.seq)
            self._heap.remove(dropped)
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, job)
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break
        return dropped

    def take(self, call_id: str, start: float) -> _Job | None:
        """Remove and return the waiting job of that utterance, if one waits."""
        for job in self._heap:
            if job.call_id == call_id and job.start == start:
                self._heap.remove(job)
                heapq.heapify(self._heap)
                return job
        return None

    async def get(self) -> _Job:
        while not self._heap:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        return heapq.heappop(self._heap)


class CallTranscripts:
    """One call's side of the pass; the session calls these (never blocking)."""

    def __init__(self, service: TranscriptService | None, call_id: str) -> None:
        self._service, self.call_id = service, call_id
        self._audio: list[bytes] = []
        self._history: list[tuple[float, float, bytes, int]] = []
        self._kept_s = 0.0
        self.handed_over = False
        self.delivered: list[FreeText] = []  # before the handoff (mode `all`)

    def feed(self, pcm: bytes) -> None:
        if self._service is not None:
            self._audio.append(pcm)

    def ended(self, start: float, end: float, language: str, rate: int) -> None:
        """The utterance [start, end] (call time, as the decision Utterance's), fed as
        PCM16 at `rate`, in the call's `language` at the time, is over."""
        pcm, self._audio = b"".join(self._audio), []
        if self._service is None or not pcm:
            return
        if language != self._service.language:  # the engine would write nonsense
            self._service.skip(self.call_id, start, end, self.handed_over, "language")
        elif self._service.mode == "all" or self.handed_over:
            self._service.submit(self, start, end, pcm, rate)
        else:
            self._keep(start, end, pcm, rate)

    def _keep(self, start: float, end: float, pcm: bytes, rate: int) -> None:
        assert self._service is not None
        self._history.append((start, end, pcm, rate))
        self._kept_s += len(pcm) / 2 / rate
        while self._kept_s > HISTORY_S and len(self._history) > 1:
            old_start, old_end, old, old_rate = self._history.pop(0)
            self._kept_s -= len(old) / 2 / old_rate
            self._service.skip(self.call_id, old_start, old_end, False, "history_limit")

    def heard(self, start: float, heard: Transcript, model: str) -> None:
        """The utterance that started at `start` was transcribed elsewhere (the second
        opinion, by `model`): when that is this pass's model, its text stands for the
        pass's and the utterance is not transcribed again."""
        service = self._service
        if service is None or model != service.transcribers[0].model:
            return
        kept = next((h for h in self._history if h[0] == start), None)
        end: float | None
        if kept is not None:
            self._history.remove(kept)
            self._kept_s -= len(kept[2]) / 2 / kept[3]
            end = kept[1]
        elif (end := service.withdraw(self.call_id, start)) is None:
            return  # already being transcribed, or never queued
        service.deliver_known(self, start, end, heard)

    def hand_over(self) -> None:
        if self._service is None or self.handed_over:
            return
        self.handed_over = True
        history, self._history, self._kept_s = self._history, [], 0.0
        for start, end, pcm, rate in history:
            self._service.submit(self, start, end, pcm, rate)
        if self.delivered:
            self._service.announce_handover(self.call_id, self.delivered)
            self.delivered = []

    def close(self) -> None:
        """The call is over: keep nothing more (jobs already queued still run)."""
        self._audio, self._history, self.delivered = [], [], []
        if self._service is not None:
            self._service.forget(self)


class TranscriptService:
    def __init__(self, transcribers: list[Transcriber], sink: TranscriptSink, mode: str = "all",
                 queue_limit: int = 64, language: str = "en") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.transcribers = transcribers
        self.sink = sink
        self.mode = mode
        self.language = language  # what the engine was loaded for; other languages are skipped
        self.queue = JobQueue(queue_limit)
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self._calls: dict[str, CallTranscripts] = {}
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._notices: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix="transcript")
                           for _ in transcribers]

    @property
    def description(self) -> str:
        t = self.transcribers[0]
        return (f"{t.name} {t.model}, {len(self.transcribers)} worker(s), calls: {self.mode}, "
                f"queue {self.queue.limit}")

    def health(self) -> dict[str, object]:
        return {"engine": self.description, "queued": len(self.queue), **self.counts}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._pump(i), name=f"transcript-{i}")
                       for i in range(len(self.transcribers))]
        self._tasks.append(asyncio.create_task(self._deliver_notices(), name="transcript-notices"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # not on the transcribers' own threads: one may still be waiting on a job
        await asyncio.gather(*(asyncio.to_thread(t.close) for t in self.transcribers))
        for executor in self._executors:
            executor.shutdown(wait=False)

    # --- calls -------------------------------------------------------------------------
    def call(self, call_id: str) -> CallTranscripts:
        calls = CallTranscripts(self, call_id)
        self._calls[call_id] = calls
        return calls

    def forget(self, calls: CallTranscripts) -> None:
        if self._calls.get(calls.call_id) is calls:
            del self._calls[calls.call_id]

    def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, HandoffDecided) and (calls := self._calls.get(event.call_id)):
            calls.hand_over()

    def submit(self, calls: CallTranscripts, start: float, end: float, pcm: bytes, rate: int) -> None:
        job = _Job(_HANDED_OVER if calls.handed_over else _ROUTINE, next(self._seq),
                   calls.call_id, start, end, pcm, rate, calls.handed_over)
        if (dropped := self.queue.put(job)) is not None:
            self.skip(dropped.call_id, dropped.start, dropped.end, dropped.handed_over, "busy")

    def withdraw(self, call_id: str, start: float) -> float | None:
        """Take a waiting utterance off the queue; its end, or None if none waits."""
        job = self.queue.take(call_id, start)
        return job.end if job is not None else None

    def deliver_known(self, calls: CallTranscripts, start: float, end: float, heard: Transcript) -> None:
        """Deliver a transcript made elsewhere by this pass's model, as the pass's own."""
        self.counts["ok"] += 1
        t = self.transcribers[0]
        text = FreeText(start, end, heard.text, heard.confidence, heard.words, t.name, t.model, "ok",
                        extra={"by": "second_opinion"})
        self._notices.put_nowait(lambda: self._deliver(calls.call_id, text, calls.handed_over))

    def skip(self, call_id: str, start: float, end: float, handed_over: bool, why: str) -> None:
        self.counts["skipped"] += 1
        t = self.transcribers[0]
        text = FreeText(start, end, "", 0.0, (), t.name, t.model, "skipped", extra={"why": why})
        self._notices.put_nowait(lambda: self._deliver(call_id, text, handed_over))

    def announce_handover(self, call_id: str, texts: list[FreeText]) -> None:
        self._notices.put_nowait(lambda: self._safely(call_id, self.sink.handed_over(call_id, texts)))

    # --- workers -----------------------------------------------------------------------
    async def _pump(self, index: int) -> None:
        transcriber, executor = self.transcribers[index], self._executors[index]
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            waited = time.monotonic() - job.queued_at
            try:
                result, cpu_s = await loop.run_in_executor(executor, _run, transcriber, job)
                text = FreeText(job.start, job.end, result.text, result.confidence, result.words,
                                transcriber.name, transcriber.model, "ok", cpu_s,
                                {"waited_s": round(waited, 3)})
            except Exception as exc:  # the decision transcript is still there; say this one failed
                log.error("call %s: free-form transcript failed: %s", job.call_id, type(exc).__name__)
                text = FreeText(job.start, job.end, "", 0.0, (), transcriber.name,
                                transcriber.model, "failed", extra={"why": type(exc).__name__})
            self.counts[text.status] += 1
            await self._deliver(job.call_id, text, job.handed_over)

    async def _deliver_notices(self) -> None:
        while True:
            notice = await self._notices.get()
            await notice()

    async def _deliver(self, call_id: str, text: FreeText, handed_over: bool) -> None:
        calls = self._calls.get(call_id)
        if calls is not None and not handed_over:
            if calls.handed_over:  # handed over while this one was being transcribed
                handed_over = True
            elif text.status == "ok":
                calls.delivered.append(text)
        await self._safely(call_id, self.sink.deliver(call_id, text, handed_over))

    async def _safely(self, call_id: str, delivery: Awaitable[None]) -> None:
        try:
            await delivery
        except Exception:
            log.exception("call %s: delivering a free-form transcript failed", call_id)


def _run(transcriber: Transcriber, job: _Job) -> tuple[Transcript, float]:
    pcm = job.pcm
    if job.rate != transcriber.sample_rate:
        samples = np.frombuffer(pcm, np.int16)
        pcm = resample(samples, job.rate, transcriber.sample_rate).tobytes()
    return transcriber.transcribe(pcm)


OFF = CallTranscripts(None, "")  # what a call gets while the pass is off


def transcripts_for(service: TranscriptService | None, call_id: str) -> CallTranscripts:
    """The call's side of the pass; OFF when the pass is off."""
    return service.call(call_id) if service is not None else OFF
