"""Cost of keeping a call's audio with consent: sealing and writing it, and reading it back.

One "call" is `--seconds` of 8 kHz 16-bit caller audio. A call's sink hands
each second of audio to a worker thread, which seals it (AES-256-GCM) and
appends it to the call's file; this times that step, chunk after chunk, in a
temporary directory (what the worker thread costs per second of audio), then
reading and decrypting the whole recording back. Prints CPU and wall time per
second of audio, the read time, and the file's size against the raw audio;
best of `--rounds`.

    .venv/bin/python benchmarks/recording_cost.py [--seconds 120] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import numpy as np

from voicebot.privacy.crypto import FieldPrivacy
from voicebot.privacy.keys import KeySet, new_root
from voicebot.storage.recordings import CHUNK_S, RecordingStore

RATE = 8000


async def one_call(store: RecordingStore, call_id: str, audio: bytes) -> tuple[float, float, float]:
    step = int(RATE * 2 * CHUNK_S)
    path, started = store.path(call_id), time.time()
    cpu, wall = time.process_time(), time.perf_counter()
    for index, at in enumerate(range(0, len(audio), step)):  # what the sink's worker thread does
        store._write(path, call_id, RATE, started, [audio[at:at + step]], index)
    written_cpu, written_wall = time.process_time() - cpu, time.perf_counter() - wall
    wall = time.perf_counter()
    recording = await store.read(call_id)
    assert recording is not None and recording.pcm == audio
    return written_cpu, written_wall, time.perf_counter() - wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    audio = (rng.normal(0, 3000, int(args.seconds * RATE))).clip(-32768, 32767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        store = RecordingStore(tmp, FieldPrivacy(KeySet(new_root())))
        runs = [await one_call(store, f"call-{n}", audio) for n in range(args.rounds)]
        size = store.path("call-0").stat().st_size
    cpu, wall, read = (min(r[i] for r in runs) for i in range(3))
    per_s = 1e6 / args.seconds
    print(f"{args.seconds:g} s of audio, best of {args.rounds}: writing {cpu * per_s:.0f} µs CPU "
          f"and {wall * per_s:.0f} µs wall per second of audio; reading back {read * 1e3:.1f} ms; "
          f"file {size:,} B for {len(audio):,} B of audio (+{100 * (size / len(audio) - 1):.2f} %)")


if __name__ == "__main__":
    asyncio.run(main())
