"""How long `voicebot report` and the live metrics take as stored calls grow.

Builds N synthetic calls (3 spoken turns each, labels, one in 20 reviewed with
a correction, two A/B variants) in a temporary SQLite file with the real
schema, then times, best of `--repeats`: reading them (SqlCallSource),
computing KPIs + fairness + A/B (build_report), rendering table, JSON and
HTML. Also the observer's cost for one call's events and store writes.

    .venv/bin/python benchmarks/report_scale.py --calls 1000,10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from voicebot.events import CallAudio, CallEnded, SpeechEndDetected
from voicebot.metrics import Metrics
from voicebot.ops.calls import SqlCallSource
from voicebot.ops.observer import CallObserver
from voicebot.ops.report import build_report, render
from voicebot.ops.tags import TagStore
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.desk import DeskStore
from voicebot.types import Source, Utterance

NOW = 1_780_000_000.0


async def _schema(path: str) -> None:
    for db in (SqlCallStore(path), DeskStore(path), TagStore(path)):
        await db.open()
        await db.close()


def _fill(path: str, n: int) -> None:
    rng = random.Random(7)
    db = sqlite3.connect(path)
    calls, events, tags, feedback = [], [], [], []
    for i in range(n):
        cid = f"c{i:07d}"
        ko = i % 3 == 0
        outcome = rng.choice(["completed", "completed", "handoff", "abandoned"])
        start = NOW - rng.uniform(0, 6.5 * 86400)
        calls.append((cid, "twilio" if i % 2 else "native", f"+1555{i % 997:07d}",
                      "ko" if ko else "en", start, start + rng.uniform(20, 300), outcome,
                      "low_confidence" if outcome == "handoff" else ""))
        for t in range(3):
            events.append((cid, start + t, "utterance", json.dumps({
                "text": "where is my order", "confidence": rng.uniform(0.2, 1.0),
                "start": t, "end": t + 1.2, "source": "speech", "intent": "order_status"})))
        tags += [(cid, "line", "narrowband" if i % 2 else "wideband"),
                 (cid, "ab_threshold", "lower" if i % 2 else "control")]
        if i % 20 == 0:
            feedback.append((cid, start + 400, "sue", "transcript_wrong", 0, "where is my border"))
    db.executemany("INSERT INTO calls (call_id, gateway, caller, language, started_at, ended_at, "
                   "outcome, handoff_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", calls)
    db.executemany("INSERT INTO call_events (call_id, at, kind, payload) VALUES (?, ?, ?, ?)", events)
    db.executemany("INSERT INTO call_tags (call_id, key, value) VALUES (?, ?, ?)", tags)
    db.executemany("INSERT INTO desk_feedback (call_id, at, user, kind, utterance, correction) "
                   "VALUES (?, ?, ?, ?, ?, ?)", feedback)
    db.commit()
    db.close()


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


async def _one_call(observer: CallObserver, store, i: int) -> None:
    cid = f"o{i}"
    await store.create(CallRecord(cid, "native"))
    await store.update(cid, disclosure_started_at=NOW)
    await store.update(cid, disclosure_played_at=NOW + 6, disclosure_confirmed_by="mark")
    for t in range(3):
        observer.on_call_event(SpeechEndDetected(cid, at=NOW + 10 * t))
        await store.add_utterance(cid, NOW + 10 * t + 0.3, Utterance("yes", 0.8, t, t + 1, Source.SPEECH))
        await store.add_prompt(cid, NOW, {"name": "menu", "started_at": NOW + 10 * t + 0.8})
    observer.on_call_event(CallAudio(cid, 60.0))
    observer.on_call_event(CallEnded(cid, "completed"))


class _Null:
    async def create(self, *a): ...
    async def update(self, *a, **k): ...
    async def add_utterance(self, *a): ...
    async def add_prompt(self, *a): ...


def _observer_cost(calls: int) -> float:
    observer = CallObserver(Metrics())
    store = observer.observe(_Null())  # type: ignore[arg-type]

    async def run() -> None:
        for i in range(calls):
            await _one_call(observer, store, i)
    t0 = time.perf_counter()
    asyncio.run(run())
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2 cores, shared)")
    print(f"{'calls':>8} {'read s':>8} {'report s':>9} {'table s':>8} {'json s':>7} {'html s':>7}")
    for n in (int(x) for x in args.calls.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "calls.db")
            asyncio.run(_schema(path))
            _fill(path, n)
            source = SqlCallSource(path)
            since, until = NOW - 7 * 86400, NOW + 1
            read = _best(lambda: asyncio.run(source.calls(since, until)), args.repeats)  # noqa: B023 - run at once
            report: dict = {}

            def build() -> None:
                report.update(asyncio.run(build_report(source, since, until)))  # noqa: B023 - run at once
            whole = _best(build, args.repeats)
            cells = [_best(lambda f=f: render(report, f), args.repeats)  # noqa: B023 - run at once
                     for f in ("table", "json", "html")]
            print(f"{n:>8} {read:>8.2f} {whole:>9.2f} {cells[0]:>8.3f} {cells[1]:>7.3f} {cells[2]:>7.3f}")
    per_call = _observer_cost(2000)
    print(f"observer: {per_call * 1e6:.0f} µs per call (13 store writes + 5 bus events)")


if __name__ == "__main__":
    main()
