"""A second opinion on the utterances the grammar recogniser is unsure of.

The decision recogniser is fast but places words only inside its small
grammar; a large-vocabulary engine (Whisper) hears what callers actually said
but takes a few hundred milliseconds. So the call asks this one only when the
dialog policy says the grammar's reading is not sure enough to act on, and
waits at most `timeout_s`: a second opinion that comes late, fails, or finds
the engine busy is no opinion, and the grammar's reading stands. The engine
runs in its own process at normal priority (unlike the background transcript
pass): its answer is on the caller's path. Under load it is not asked when the
jobs ahead of it (at their recent pace) would already use up the timeout; with
none ahead it is always asked, so a slow spell cannot switch it off for good.
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
from voicebot.transcript.worker import Transcriber
from voicebot.types import Transcript

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


@dataclass
class SecondOpinion:
    transcriber: Transcriber
    language: str  # the engine's language; other calls are not asked
    timeout_s: float = 1.0
    max_waiting: int = 4  # asks queued behind the running one at most
    counts: OpinionCounts = field(default_factory=OpinionCounts)
    observe: Callable[[str], None] | None = None  # told each count's name as it grows (metrics)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="second-opinion")
        self._waiting = 0
        self._job_s = self.timeout_s / 3  # how long one job takes (moving average)

    @property
    def description(self) -> str:
        t = self.transcriber
        return f"{t.name} {t.model}, within {self.timeout_s:g} s"

    @property
    def idle(self) -> bool:
        """No job running or waiting: room for one asked on speculation."""
        return self._waiting == 0

    def health(self) -> dict[str, object]:
        return {"engine": self.description, **self.counts.as_dict()}

    async def ask(self, pcm: bytes, rate: int, prompt: str,
                  late: Callable[[Transcript], None] | None = None) -> Transcript | None:
        """What the engine heard in this PCM16 utterance at `rate`, or None.

        A job that answers after the budget still ran: its words go to `late`
        (the free-form pass takes them instead of transcribing the audio again)."""
        if self._waiting and (self._waiting > self.max_waiting
                              or (self._waiting + 1) * self._job_s > self.timeout_s):
            self._count("busy")  # it would come late: better not add to the queue
            return None
        self._count("asked")
        self._waiting += 1
        job = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, pcm, rate, prompt)
        job.add_done_callback(self._job_done)
        try:
            heard = await asyncio.wait_for(asyncio.shield(job), self.timeout_s)
        except TimeoutError:
            self._count("late")
            if late is not None:
                job.add_done_callback(partial(_deliver_late, late))
            return None
        except Exception as exc:  # the engine's failure is not the call's: the grammar decides
            log.error("second opinion failed: %s", type(exc).__name__)
            self._count("failed")
            return None
        self._count("answered")
        return heard

    def _count(self, name: str) -> None:
        setattr(self.counts, name, getattr(self.counts, name) + 1)
        if self.observe is not None:
            self.observe(name)

    def _job_done(self, job: asyncio.Future[Transcript]) -> None:
        self._waiting -= 1
        if not job.cancelled():
            job.exception()  # retrieved: a late failure is counted above or not at all

    def _timed(self, pcm: bytes, rate: int, prompt: str) -> Transcript:
        began = time.monotonic()
        try:
            return self._run(pcm, rate, prompt)
        finally:
            self._job_s += (time.monotonic() - began - self._job_s) / 4

    def _run(self, pcm: bytes, rate: int, prompt: str) -> Transcript:
        if rate != self.transcriber.sample_rate:
            samples = np.frombuffer(pcm, np.int16)
            pcm = resample(samples, rate, self.transcriber.sample_rate).tobytes()
        heard, _ = self.transcriber.transcribe(pcm, prompt)
        return heard

    async def close(self) -> None:
        await asyncio.to_thread(self.transcriber.close)
        self._executor.shutdown(wait=False)


def _deliver_late(late: Callable[[Transcript], None], job: asyncio.Future[Transcript]) -> None:
    if not job.cancelled() and job.exception() is None:
        late(job.result())
