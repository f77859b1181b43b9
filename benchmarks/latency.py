"""Latencies the tests used to hold as wall-clock limits, printed side by side.

    .venv/bin/python benchmarks/latency.py [--runs 3]

- pocketsphinx `finish()` after the whole utterance was fed to `accept()` (the
  decoding happens in accept(): finish only closes; it was held under 0.1 s);
- first bot audio after the stream starts, over the native protocol and over
  Twilio's, on a real server with the real engine in worker processes and a
  fixture replayed as fast as the socket takes it (held under 0.5 s);
- the frame batcher: a real-time message waits for its tick (30 ms here), a
  backlog is delivered on the loop's next turn (held under 40 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402

from tests.asr_audio import chunks  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402
from voicebot.app import REGISTRY, create_app  # noqa: E402
from voicebot.asr.loader import load_engine  # noqa: E402
from voicebot.asr.workers import WorkerPoolEngine  # noqa: E402
from voicebot.audio.batch import FrameBatcher  # noqa: E402
from voicebot.audio.codecs import ulaw_encode  # noqa: E402
from voicebot.audio.resample import resample  # noqa: E402
from voicebot.audio.vad import VadConfig  # noqa: E402
from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.dialog.compile import default_vocabulary  # noqa: E402
from voicebot.replay.client import ReplayOptions, replay  # noqa: E402


def sphinx_finish_s(runs: int) -> list[float]:
    engine = load_engine(None, default_vocabulary("en"))
    samples, rate = read_wav(FIXTURES / "en_human_robot.wav")
    pcm = resample(samples, rate, engine.sample_rate).tobytes()
    times = []
    for _ in range(runs):
        stream = engine.stream()
        for chunk in chunks(pcm, engine.sample_rate):
            stream.accept(chunk)
        t0 = time.perf_counter()
        stream.finish()
        times.append(time.perf_counter() - t0)
    return times


async def first_audio_s(runs: int, folder: Path) -> dict[str, list[float]]:
    engine = WorkerPoolEngine(None, default_vocabulary("en"), workers=1)
    settings = Settings(port=0, db=str(folder / "calls.db"), staff_token="x" * 24)
    runner = web.AppRunner(create_app(settings, engine=engine), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    while not runner.app[REGISTRY].ready:
        await asyncio.sleep(0.05)
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    found: dict[str, list[float]] = {"native": [], "twilio": []}
    try:
        for _ in range(runs):
            for protocol, path in (("native", "/v1/stream"), ("twilio", "/twilio/media")):
                result = await replay(f"ws://127.0.0.1:{port}{path}", samples, rate, ReplayOptions(
                    protocol=protocol, marks="immediate", speed=0, max_call_s=30))  # type: ignore[arg-type]
                if result.first_audio_s is not None:
                    found[protocol].append(result.first_audio_s)
    finally:
        await runner.cleanup()
        engine.close()
    return found


async def batcher_s(runs: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    samples, rate = read_wav(FIXTURES / "en_human_agent.wav")
    data = ulaw_encode(resample(samples, rate, 8000))
    found: dict[str, list[float]] = {"one message (tick 30 ms)": [], "a 1.5 s backlog": []}
    for _ in range(runs):
        batcher = FrameBatcher(loop.call_later, tick_s=0.03)
        got = asyncio.Event()
        delivered: list[float] = []

        def deliver(events: object, delivered: list[float] = delivered,
                    got: asyncio.Event = got) -> None:
            delivered.append(time.monotonic())
            got.set()
        paced = batcher.lane(8000, "mulaw", VadConfig(), deliver)
        for i in range(0, 12000, 160):
            pushed = time.monotonic()
            paced.push(data[i:i + 160])
            await asyncio.sleep(0.04)
            if got.is_set():
                found["one message (tick 30 ms)"].append(delivered[0] - pushed)
                break
        paced.close()
        got.clear()
        burst = batcher.lane(8000, "mulaw", VadConfig(), deliver)
        pushed = time.monotonic()
        burst.push(data[:12000])
        await asyncio.wait_for(got.wait(), 5)
        found["a 1.5 s backlog"].append(delivered[-1] - pushed)
        batcher.close()
    return found


def row(name: str, values: list[float], held: str) -> str:
    if not values:
        return f"| {name} | – | – | {held} |"
    return (f"| {name} | {statistics.median(values) * 1000:.1f} | {max(values) * 1000:.1f} "
            f"| {held} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    finish = sphinx_finish_s(args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        audio = asyncio.run(first_audio_s(args.runs, Path(tmp)))
    batch = asyncio.run(batcher_s(args.runs))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each; ms")
    print("| what | median | max | the limit tests held |")
    print("|---|---:|---:|---|")
    print(row("pocketsphinx finish() after accept()", finish, "< 100"))
    for protocol, values in audio.items():
        print(row(f"first audio, {protocol}", values, "< 500"))
    for name, values in batch.items():
        print(row(f"frame batcher, {name}", values, "≥ 25 (tick)" if "tick" in name else "< 40"))


if __name__ == "__main__":
    main()
