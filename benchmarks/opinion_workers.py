"""The second opinion's engine as the server runs it: how many Whisper processes,
on how many threads each.

    .venv/bin/python benchmarks/opinion_workers.py                        # tiny.en
    .venv/bin/python benchmarks/opinion_workers.py --model whisper-base --sizes 1,8
    .venv/bin/python benchmarks/opinion_workers.py --setups 1x2@2,1x2,1x1,2x1

Each setup ("copies x threads", "@b": numpy's OpenBLAS on b threads in those
processes, as before voicebot set it to 1; without it, 1) starts its Whisper
processes as the server does
(`ProcessTranscriber`, normal priority, greedy) behind one `SecondOpinion`,
lets it learn the engine's pace, then sends n asks at once (the English
fixtures' utterances as the VAD passes them on; budget 60 s, so none is
dropped) and prints when the last caller got their answer, the p50 of all,
and the CPU seconds the engine processes used, side by side with the first
setup (the ratio is the first setup's time over this one's: over 1 is
faster). A burst of turns is where the engine's throughput is what callers wait
for; n = 1 is one caller alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from opinion_batch import PROMPT, utterances  # noqa: E402

from voicebot.transcript.opinion import SecondOpinion  # noqa: E402
from voicebot.transcript.worker import ProcessTranscriber  # noqa: E402


@dataclass(frozen=True)
class Setup:
    copies: int
    threads: int
    blas: int = 1  # numpy's OpenBLAS threads in the engine's processes

    @property
    def name(self) -> str:
        return f"{self.copies}x{self.threads}" + (f"@{self.blas}" if self.blas != 1 else "")


def parse_setups(text: str) -> list[Setup]:
    setups = []
    for item in text.split(","):
        shape, _, blas = item.strip().partition("@")
        copies, threads = shape.split("x")
        setups.append(Setup(int(copies), int(threads), int(blas or 1)))
    return setups


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks


Timings = dict[int, tuple[float, float, float]]  # n -> (last answer s, p50 s, engine CPU s)


async def measure(setup: Setup, model: str, clips: list[bytes], sizes: list[int]) -> Timings:
    """Each burst size's timings, on this setup's processes."""
    def spawn() -> ProcessTranscriber:
        return ProcessTranscriber("whisper", model, "en", ROOT / "models", setup.threads, 120.0,
                                  nice=0, beam_size=1)

    loop = asyncio.get_running_loop()
    os.environ["OPENBLAS_NUM_THREADS"] = str(setup.blas)  # the processes inherit it
    copies = await asyncio.gather(*(loop.run_in_executor(None, spawn) for _ in range(setup.copies)))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    opinion = SecondOpinion(copies[0], "en", timeout_s=60.0, max_waiting=max(sizes), more=tuple(copies[1:]))
    for pcm in (clips * 10)[:10]:  # it learns the engine's pace, as a running server has
        await opinion.ask(pcm, 16000, PROMPT)
    out = {}
    for n in sizes:
        pcms = (clips[1:] * (n // len(clips) + 1))[:n]
        cpu_before = sum(process_cpu_s(c.pid) for c in copies)
        began = time.perf_counter()

        done = sorted(await asyncio.gather(*(answered(opinion, p, began) for p in pcms)))
        cpu = sum(process_cpu_s(c.pid) for c in copies) - cpu_before
        out[n] = (done[-1], statistics.median(done), cpu)
    await opinion.close()
    return out


async def answered(opinion: SecondOpinion, pcm: bytes, began: float) -> float:
    heard = await opinion.ask(pcm, 16000, PROMPT)
    assert heard is not None, f"no answer: {opinion.counts}"
    return time.perf_counter() - began


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="whisper-tiny.en")
    ap.add_argument("--setups", default="1x2@2,1x2,1x1,2x1",
                    help="copies x threads[@OpenBLAS threads], comma-separated; the first is the base")
    ap.add_argument("--sizes", default="1,4,8,16")
    ap.add_argument("--limit", type=int, default=0, help="at most this many utterances (0: all)")
    args = ap.parse_args()
    setups = parse_setups(args.setups)
    sizes = [int(n) for n in args.sizes.split(",")]
    clips = utterances()
    clips = clips[: args.limit] if args.limit else clips
    print(f"{len(clips)} utterances from audio_fixtures/, Whisper {args.model}, greedy, "
          f"n asks arriving at once (last answer / p50 / engine CPU)")
    results = {s.name: asyncio.run(measure(s, args.model, clips, sizes)) for s in setups}
    base = setups[0].name
    print(f"{'n':>3} " + " ".join(f"{s.name + ' last/p50/cpu s':>24} {'x':>5}" for s in setups))
    for n in sizes:
        cells = []
        for s in setups:
            last, p50, cpu = results[s.name][n]
            cells.append(f"{last:8.2f} /{p50:6.2f} /{cpu:6.2f} {results[base][n][0] / last:5.2f}")
        print(f"{n:3d} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
