"""A second opinion on what the grammar recogniser heard.

The decision recogniser is fast but places words only inside its small
grammar, forcing other speech into them; a large-vocabulary engine (Whisper)
hears what callers actually said but takes a hundred milliseconds or more. So
the call asks this one when the dialog policy says so (every answer to an open
question, an unsure answer to "do you want a person?"), and
waits at most `timeout_s`, or the budget the call gives the ask (longer where
the grammar alone would have the caller asked again): a second opinion that
comes late, fails, or finds the engine busy is no opinion, and the grammar's
reading stands. The engine
runs in its own process at normal priority (unlike the background transcript
pass): its answer is on the caller's path.

Several copies of the engine (`more`, each its own process) can decode asks
side by side: alone, two one-thread Whisper processes decode about 1.5 times as
many utterances in the same time as one on two threads, but in a server on 2
cores they take that CPU from the grammar's recognition, so one copy is the
default (benchmarks/opinion_workers.py). Asks that come
while every copy is busy wait, and with `max_batch` over 1 are decoded together
when one is free (Whisper shares the search's steps across a batch: 4
utterances cost about 2.3 times one), though a batch's callers all wait for the
whole batch. Under load it is not asked when the batches running and those up
to the one it would join (at their recent pace, shared among the copies) would
already use up its budget, or when more asks wait than `max_waiting` per copy
(scaled by a longer budget); with a copy free it is always asked, so a slow
spell cannot switch it off for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from voicebot.audio.resample import resample
from voicebot.transcript.meaning import Meaning
from voicebot.transcript.worker import Transcriber
from voicebot.types import Topics, Transcript

log = logging.getLogger("voicebot.transcript")


@dataclass
class OpinionCounts:
    asked: int = 0
    answered: int = 0
    late: int = 0  # over the timeout: the grammar's reading stood
    busy: int = 0  # too many waiting: not asked
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


# What each further utterance in a batch adds to one's time (tiny.en, 2 threads:
# batches of 2, 4 and 8 cost 1.3, 2.3 and 4.6 times one; benchmarks/opinion_batch.py).
BATCH_EXTRA = 0.45


def batch_cost(n: int) -> float:
    """A batch of n utterances' time, in units of one utterance's."""
    return 1.0 + BATCH_EXTRA * (max(1, n) - 1)


@dataclass(eq=False)
class _Ask:
    pcm: bytes
    rate: int
    prompt: str
    check: str  # the grammar's words, scored against the audio (Transcript.fit); "" none
    topics: Topics  # what the words' meaning is compared with (Transcript.closeness)
    answer: asyncio.Future[Transcript]


@dataclass
class SecondOpinion:
    transcriber: Transcriber
    language: str  # the engine's language; other calls are not asked
    timeout_s: float = 1.0
    max_waiting: int = 4  # asks waiting behind the running batches at most, per copy of the engine
    max_batch: int = 1  # asks decoded together at most (1: one after another)
    counts: OpinionCounts = field(default_factory=OpinionCounts)
    observe: Callable[[str], None] | None = None  # told each count's name as it grows (metrics)
    meaning: Meaning | None = None  # compares the words with the ask's topics (Transcript.closeness)
    more: tuple[Transcriber, ...] = ()  # further copies of the engine, decoding side by side

    def __post_init__(self) -> None:
        self._free = [self.transcriber, *self.more]  # copies with no batch to decode
        self._executor = ThreadPoolExecutor(len(self._free), thread_name_prefix="second-opinion")
        self._queue: list[_Ask] = []  # waiting for a copy
        self._running: list[int] = []  # the size of each batch being decoded
        self._waiting = 0  # asks queued or running
        self._job_s = self.timeout_s / 3  # one utterance's time alone on one copy (moving average)

    @property
    def engines(self) -> int:
        return 1 + len(self.more)

    @property
    def description(self) -> str:
        t = self.transcriber
        copies = f" x{self.engines}" if self.more else ""
        return f"{t.name} {t.model}{copies}, within {self.timeout_s:g} s"

    @property
    def waiting(self) -> int:
        """Asks queued or being decoded."""
        return self._waiting

    def health(self) -> dict[str, object]:
        return {"engine": self.description, **self.counts.as_dict()}

    async def ask(self, pcm: bytes, rate: int, prompt: str,
                  late: Callable[[Transcript], None] | None = None, check: str = "",
                  timeout_s: float | None = None, topics: Topics = ()) -> Transcript | None:
        """What the engine heard in this PCM16 utterance at `rate`, or None; with
        `check`'s fit to the audio (the grammar's words) where the engine scores it,
        and the words' closeness to `topics` where a sentence encoder serves the language.
        `timeout_s`: this ask's budget, if not `self.timeout_s`.

        A job that answers after the budget still ran: its words go to `late`
        (the free-form pass takes them instead of transcribing the audio again)."""
        budget = self.timeout_s if timeout_s is None else timeout_s
        if self._would_be_late(budget):
            self._count("busy")  # it would come late: better not add to the queue
            return None
        self._count("asked")
        ask = _Ask(pcm, rate, prompt, check, topics, asyncio.get_running_loop().create_future())
        self._queue.append(ask)
        self._waiting += 1
        ask.answer.add_done_callback(self._answered)
        if self._free:
            self._next_batch()
        try:
            heard = await asyncio.wait_for(asyncio.shield(ask.answer), budget)
        except TimeoutError:
            self._count("late")
            if late is not None:
                ask.answer.add_done_callback(partial(_deliver_late, late))
            return None
        except Exception as exc:  # the engine's failure is not the call's: the grammar decides
            log.error("second opinion failed: %s", type(exc).__name__)
            self._count("failed")
            return None
        self._count("answered")
        return heard

    def _would_be_late(self, budget: float) -> bool:
        """The running batches, then the batches up to this ask's, shared among the
        copies of the engine, over the budget."""
        if self._free:
            return False
        joining, size = len(self._queue) + 1, max(1, self.max_batch)
        full, rest = divmod(joining, size)
        own = batch_cost(rest or size)
        before = full * batch_cost(size) + (batch_cost(rest) if rest else 0.0) - own
        ahead = (sum(batch_cost(n) for n in self._running) + before) / self.engines + own
        waiting = self.max_waiting * self.engines * max(1.0, budget / self.timeout_s)  # a longer budget, a longer queue
        return joining > waiting or ahead * self._job_s > budget

    def _next_batch(self) -> None:
        """A copy is free: the oldest ask and those waiting with its prompt, as one batch."""
        prompt = self._queue[0].prompt
        batch = [a for a in self._queue if a.prompt == prompt][: max(1, self.max_batch)]
        self._queue = [a for a in self._queue if a not in batch]
        engine = self._free.pop()
        self._running.append(len(batch))
        job = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, engine, batch)
        job.add_done_callback(partial(self._batch_done, engine, batch))

    def _batch_done(self, engine: Transcriber, batch: list[_Ask], job: asyncio.Future[list[Transcript]]) -> None:
        self._running.remove(len(batch))
        self._free.append(engine)
        failure = job.exception() if not job.cancelled() else RuntimeError("the engine's job was cancelled")
        for i, ask in enumerate(batch):
            if ask.answer.done():
                continue
            if failure is not None:
                ask.answer.set_exception(failure)
            else:
                ask.answer.set_result(job.result()[i])
        if self._queue:
            self._next_batch()

    def _answered(self, answer: asyncio.Future[Transcript]) -> None:
        self._waiting -= 1
        if not answer.cancelled():
            answer.exception()  # retrieved: a late failure is counted above or not at all

    def _count(self, name: str) -> None:
        setattr(self.counts, name, getattr(self.counts, name) + 1)
        if self.observe is not None:
            self.observe(name)

    def _timed(self, engine: Transcriber, batch: list[_Ask]) -> list[Transcript]:
        began = time.monotonic()
        try:
            return self._run(engine, batch)
        finally:
            alone = (time.monotonic() - began) / batch_cost(len(batch))
            self._job_s += (alone - self._job_s) / 4

    def _run(self, engine: Transcriber, batch: list[_Ask]) -> list[Transcript]:
        target = engine.sample_rate
        pcms = [ask.pcm if ask.rate == target
                else resample(np.frombuffer(ask.pcm, np.int16), ask.rate, target).tobytes() for ask in batch]
        heard, _ = engine.transcribe_many(pcms, batch[0].prompt, [ask.check for ask in batch])
        meaning = self.meaning
        if meaning is None or self.language not in meaning.languages:
            return heard
        return [meaning.annotate(words, ask.topics) for words, ask in zip(heard, batch, strict=True)]

    async def close(self) -> None:
        for engine in (self.transcriber, *self.more):
            await asyncio.to_thread(engine.close)
        self._executor.shutdown(wait=False)


def _deliver_late(late: Callable[[Transcript], None], job: asyncio.Future[Transcript]) -> None:
    if not job.cancelled() and job.exception() is None:
        late(job.result())
