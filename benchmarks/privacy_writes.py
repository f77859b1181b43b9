"""Cost of encryption at rest per call write: the SQLite store alone (before) and
behind `SealedCallStore` with the real keys (after), side by side in one run.

A "call" is what a typical handed-over call writes: the record, 4 prompts, 3
utterances of 8 words (with word timings) and 4 updates (disclosure times,
outcome, summary, end) = 12 writes. Each store gets its own file in a temporary
directory; rounds alternate between them; the best round is kept. Also timed
without any I/O: sealing and opening one utterance, and one pseudonym.

    .venv/bin/python benchmarks/privacy_writes.py [--calls 200] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from voicebot.privacy.crypto import FieldPrivacy
from voicebot.privacy.keys import KeySet, new_root
from voicebot.storage.base import CallRecord, utterance_json
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.sealed import SealedCallStore, seal_item, unseal_item
from voicebot.types import Source, Utterance, Word

WRITES_PER_CALL = 12
TEXT = "i would like to check on the status of my order please"


def _utterance(i: int) -> Utterance:
    words = tuple(Word(w, 0.9, i + k * 0.3, i + k * 0.3 + 0.25) for k, w in enumerate(TEXT.split()[:8]))
    return Utterance(" ".join(w.text for w in words), 0.9, float(i), i + 2.5, Source.SPEECH,
                     "order_status", words)


async def _one_call(store, n: int) -> None:
    call_id = f"call-{n}"
    now = time.time()
    await store.create(CallRecord(call_id, "native", caller=f"+1555{n:07d}", started_at=now,
                                  disclosure_text="You've reached our automated assistant."))
    await store.update(call_id, disclosure_started_at=now)
    for k in range(4):
        await store.add_prompt(call_id, now + k, {"name": f"p{k}", "text": "How can I help you today?",
                                                  "started_at": now + k, "finished_at": now + k + 1,
                                                  "confirmed_by": "mark"})
        if k < 3:
            await store.add_utterance(call_id, now + k + 0.5, _utterance(k))
    await store.update(call_id, disclosure_played_at=now + 1, disclosure_confirmed_by="mark")
    await store.update(call_id, outcome="handoff", handoff_reason="caller_request",
                       summary='Caller said "i want to speak to a person".')
    await store.update(call_id, ended_at=now + 30)


async def _timed(make, calls: int, offset: int) -> tuple[float, float]:
    """(wall, CPU of the whole process incl. aiosqlite's thread) seconds per call."""
    store = make()
    await store.open()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(calls):
            await _one_call(store, offset + n)
        return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls
    finally:
        await store.close()


def _cpu_only(privacy: FieldPrivacy, repeats: int = 2000) -> dict[str, float]:
    item = utterance_json(_utterance(0))
    started = time.perf_counter()
    for _ in range(repeats):
        sealed = seal_item(privacy, "utterance", item)
    seal_us = (time.perf_counter() - started) / repeats * 1e6
    started = time.perf_counter()
    for _ in range(repeats):
        unseal_item(privacy, "utterance", sealed)
    open_us = (time.perf_counter() - started) / repeats * 1e6
    started = time.perf_counter()
    for n in range(repeats):
        privacy.pseudonym(f"+1555{n:07d}")
    return {"seal_utterance_us": seal_us, "open_utterance_us": open_us,
            "pseudonym_us": (time.perf_counter() - started) / repeats * 1e6}


async def main(calls: int, rounds: int) -> dict:
    privacy = FieldPrivacy(KeySet(new_root()))
    with tempfile.TemporaryDirectory() as tmp:
        plain_db, sealed_db = Path(tmp) / "plain.db", Path(tmp) / "sealed.db"
        makers = {"plain": lambda: SqlCallStore(plain_db),
                  "sealed": lambda: SealedCallStore(SqlCallStore(sealed_db), privacy)}
        best = {k: (float("inf"), float("inf")) for k in makers}
        for r in range(rounds):  # the order alternates, so neither always runs first
            for k in (("plain", "sealed") if r % 2 == 0 else ("sealed", "plain")):
                wall, cpu = await _timed(makers[k], calls, r * calls)
                best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
        sizes = {k: sum(p.stat().st_size for p in Path(tmp).glob(f"{k}.db*")) for k in best}
    return {"calls": calls, "rounds": rounds, "load": os.getloadavg()[0],
            "ms_per_call": {k: v[0] * 1e3 for k, v in best.items()},
            "cpu_ms_per_call": {k: v[1] * 1e3 for k, v in best.items()},
            "us_per_write": {k: v[0] * 1e6 / WRITES_PER_CALL for k, v in best.items()},
            "ratio": best["sealed"][0] / best["plain"][0],
            "cpu_ratio": best["sealed"][1] / best["plain"][1],
            "bytes": sizes, "cpu_only": _cpu_only(privacy)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.calls, args.rounds))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.calls} calls x {WRITES_PER_CALL} writes, best of {args.rounds} rounds, "
              f"load {result['load']:.2f}")
        print(f"{'store':<10}{'ms/call':>10}{'CPU ms/call':>13}{'us/write':>10}{'file bytes':>12}")
        for k in ("plain", "sealed"):
            print(f"{k:<10}{result['ms_per_call'][k]:>10.2f}{result['cpu_ms_per_call'][k]:>13.2f}"
                  f"{result['us_per_write'][k]:>10.1f}{result['bytes'][k]:>12,}")
        print(f"sealed / plain: {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x CPU")
        cpu = result["cpu_only"]
        print(f"no I/O: seal one utterance {cpu['seal_utterance_us']:.1f} us, open it "
              f"{cpu['open_utterance_us']:.1f} us, one pseudonym {cpu['pseudonym_us']:.1f} us")
