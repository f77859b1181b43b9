"""Turn-taking calls for benchmarks/capacity.py --turns: response time as the
caller hears it, false cuts, and the held-out set's first decision.

One item is one caller turn: a clip, where its speech starts and ends, and
(held-out clips) what the bot should decide. A call waits for the menu to
play, then speaks the turn: 0.5 s after the menu (calls arriving over time),
or so that every call of a wave stops speaking at the same moment (a burst).
The bot's audio is timed on the caller's line clock (when each piece starts
playing); "audible" is its first sample at or above AUDIBLE (about -50 dBFS).

  response   end of the caller's turn -> first audible bot audio after it
  false cut  the bot's first audible audio after the turn began came before
             the caller had finished (it talked while the caller went on)
  split      the bot heard the turn as more than one utterance
  joined     turns the caller spoke on after before the bot answered: heard as one
  held       answers that waited because the caller's voice was starting again
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from understanding import Clips, choose, score
from understanding_caller import RATE, Caller, Outcome, Turn, played, reply_to

from voicebot.audio.wav import read_wav
from voicebot.metrics import TURN_END_BUCKETS
from voicebot.replay.callers import caller_number

AUDIBLE = 100
PAUSE_BEFORE_S = 0.5  # the caller starts this long after the menu played (arrivals over time)
AFTER_REPLY_S = 3.0  # how long to wait for the reply's audio once it is announced
HELDOUT_CLASSES = ("person_request", "routine", "out_of_domain", "person_word_no_request")
_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class Item:
    name: str
    kind: str  # "mid" / "on" / "short" (turn fixtures), "fixture", or the held-out class
    audio: np.ndarray  # int16 at RATE
    start: float  # the turn's speech, seconds into `audio`
    end: float
    intent: str | None = None
    family: str = ""  # a held-out clip's voice family


def fixture_items(directory: Path, names: list[str] | None, whole_turn: bool) -> list[Item]:
    """Manifest fixtures: the whole turn (every speech interval) or the first utterance."""
    entries = json.loads((directory / "manifest.json").read_text())
    items = []
    for e in entries:
        if names is not None and e["file"] not in names or e["language"] != "en" or not e["speech"]:
            continue
        samples, rate = read_wav(directory / e["file"], RATE)
        start, end = e["speech"][0][0], (e["speech"][-1] if whole_turn else e["speech"][0])[1]
        cut = samples[int((start - 0.2) * RATE): int((end + 0.2) * RATE)]
        kind = e["file"].split("_")[0] if whole_turn else "fixture"
        items.append(Item(e["file"], kind, cut, 0.2, 0.2 + end - start))
    return items


def heldout_items(manifest: Path, per_class: int) -> list[Item]:
    clips = Clips(manifest)
    items = []
    for clip in choose(clips, "en", list(HELDOUT_CLASSES), per_class):
        audio = clips.audio(clip["file"])
        start, end = speech_span(audio)
        items.append(Item(clip["file"], clip["class"], audio, start, end, clip.get("intent"), clip["family"]))
    return items


def speech_span(audio: np.ndarray, below_peak_db: float = 35.0, above_floor_db: float = 3.0) -> tuple[float, float]:
    """First and last 20 ms frame within `below_peak_db` of the loudest one and
    `above_floor_db` over the line's noise (its quietest tenth of frames): on a
    clip with line noise 20-30 dB under the speech, the peak rule alone spans the
    whole clip, ending the turn ~0.3 s late (its padding; make_heldout.py)."""
    step = RATE // 50
    frames = audio[: audio.size - audio.size % step].astype(np.float64).reshape(-1, step)
    level = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-9)
    loud = np.flatnonzero(level >= max(level.max() - below_peak_db, np.percentile(level, 10) + above_floor_db))
    return loud[0] * step / RATE, (loud[-1] + 1) * step / RATE


async def place(url: str, item: Item, arrive_after: float, end_at: float | None) -> dict[str, Any]:
    """One call speaking `item`'s turn; `end_at` (monotonic): when the turn must end (burst)."""
    await asyncio.sleep(arrive_after)
    result: dict[str, Any] = {"name": item.name, "kind": item.kind, "family": item.family}
    outcome = Outcome(item.name, "", "en", item.kind, item.intent)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            caller = Caller(ws, 1.0, caller_number(next(_NUMBERS), prefix="+1556"))
            await asyncio.wait_for(caller.talk(_turn(caller, item, end_at, outcome, result)), 120)
    except Exception as exc:  # one broken call is a row, not the end of the run
        result["error"] = f"{type(exc).__name__}: {exc}"
    if item.kind in HELDOUT_CLASSES and outcome.turns:
        result["right"] = score(outcome)["first"]
    result["syserr"] = outcome.handoff == "system_error"
    return result


async def _turn(caller: Caller, item: Item, end_at: float | None, outcome: Outcome,
                result: dict[str, Any]) -> None:
    if not await played(caller, "menu", 60):
        result["error"] = "the menu never played"
        return
    wait = PAUSE_BEFORE_S if end_at is None else end_at - item.end - time.monotonic()
    await asyncio.sleep(max(0.0, wait))
    caller.say(item.audio)
    reply = await reply_to(caller, outcome, item.audio.size / RATE + 30)
    outcome.turns.append(Turn(item.name, reply))
    began, ended = caller.spoke_at + item.start, caller.spoke_at + item.end
    deadline = time.monotonic() + AFTER_REPLY_S
    while (audible := first_audible(caller.heard, began)) is None and time.monotonic() < deadline \
            and reply != "none":
        await asyncio.sleep(0.05)
    result.update(reply=reply, heard=len(outcome.transcripts), late_s=max(0.0, -wait))
    if audible is not None:
        result["response"] = float(audible - ended)
        result["false_cut"] = bool(audible < ended)


def first_audible(heard: list[tuple[float, np.ndarray]], after: float) -> float | None:
    """When the first audible bot sample playing after `after` plays."""
    for starts, samples in heard:
        if starts + samples.size / RATE < after:
            continue
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= AUDIBLE)
        offsets = loud[loud / RATE + starts >= after]
        if offsets.size:
            return starts + offsets[0] / RATE
    return None


# --- the run: arms x arrival patterns, waves of concurrent calls --------------------------------
DEFAULT_ARMS = ("fixed:VOICEBOT_TURN_COMPLETE_MS=0", "adaptive:")
PATTERNS = ("arrivals", "burst")


async def run_turns(args: Any) -> int:
    import os
    import tempfile

    from served import EN_MIX, FIXTURES, ROOT, cpu_seconds, family, parse_arm, pct, rss_mb, start_server, when_listening

    if args.rows and args.clips.resolve() == (ROOT / "evaluation" / "manifest.json").resolve():
        raise SystemExit("--rows names every clip: use it with a development set (--clips), not the held-out one")
    items = (fixture_items(FIXTURES / "turns", None, True) * args.repeat + fixture_items(FIXTURES, EN_MIX, False)
             + heldout_items(args.clips, args.heldout))
    arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    print(f"# {len(items)} turns ({', '.join(f'{k} {n}' for k, n in kinds(items).items())}), waves of "
          f"{args.calls} calls, arrivals over {args.ramp:.0f} s; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print(HEADER)
    for arm, env in arms:
        with tempfile.TemporaryDirectory() as tmp:
            proc, base = await start_server(args, f"{tmp}/calls.db", env)
            try:
                listen_at = await when_listening(base, "native")
                pids = family(proc.pid)
                await settled(pids, cpu_seconds)  # the workers build their decoder sets first
                for label, pattern in rounds(PATTERNS, args.rounds):
                    peak = [rss_mb(pids)]

                    def sample(peak: list[float] = peak, pids: list[int] = pids) -> None:
                        peak.append(rss_mb(pids))

                    before = await counts(base)
                    results = await _pattern(base, items, pattern, listen_at, args, sample)
                    after = await counts(base)
                    done = {k: after[k] - before[k] for k in after}
                    print(row(arm, label, results, max(peak), pct, done), flush=True)
                    print(by_kind(results, pct), flush=True)
                    if args.rows:
                        with args.rows.open("a") as out:
                            out.writelines(json.dumps({"arm": arm, "pattern": pattern, "round": label, **r}) + "\n"
                                           for r in results)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


def rounds(patterns: tuple[str, ...], count: int) -> list[tuple[str, str]]:
    """(label, pattern): each pattern `count` times in turn, labelled with its
    round from the second on ("burst2")."""
    return [(p + (str(r + 1) if r else ""), p) for r in range(max(1, count)) for p in patterns]


COUNTED = {  # column -> the server's counter line it sums
    "joined": "voicebot_turns_joined_total",
    "held": "voicebot_answers_held_total",
    "whisper": 'voicebot_second_opinions_total{result="asked"}',
    "fallback": 'voicebot_second_opinion_fallbacks_total{result="asked"}',
    "ends": "voicebot_turn_end_silence_seconds_count",
    # the bucket under the 500 ms hangover: turns the server ended at a pause
    "at_pause": f'voicebot_turn_end_silence_seconds_bucket{{le="{TURN_END_BUCKETS[1]}"}}',
}


async def counts(base: str) -> dict[str, int]:
    """The server's counts so far: turns joined, answers held, Whisper's and the fallback's asks."""
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
        return counted(await r.text())


def counted(metrics: str) -> dict[str, int]:
    """COUNTED's columns from a /metrics page."""
    return {name: sum(int(float(line.split()[-1])) for line in metrics.splitlines() if line.startswith(key + " "))
            for name, key in COUNTED.items()}


async def settled(pids: list[int], cpu_seconds: Any, limit_s: float = 90.0) -> None:
    """Wait (at most `limit_s`) until the server and its workers use < 10 % of a core."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pids)
        await asyncio.sleep(1.0)
        if cpu_seconds(pids) - before < 0.1:
            return


def kinds(items: list[Item]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item.kind] = out.get(item.kind, 0) + 1
    return out


async def _pattern(base: str, items: list[Item], pattern: str, listen_at: float, args: Any,
                   sample: Any) -> list[dict[str, Any]]:
    url = base.replace("http", "ws") + "/v1/stream"
    results: list[dict[str, Any]] = []
    for first in range(0, len(items), args.calls):
        wave = items[first: first + args.calls]
        fillers = items[: args.calls - len(wave)]  # keep the wave full; not counted
        calls = wave + fillers
        if pattern == "arrivals":
            tasks = [place(url, it, i * args.ramp / len(calls), None) for i, it in enumerate(calls)]
        else:
            end_at = time.monotonic() + listen_at + PAUSE_BEFORE_S + max(it.end for it in calls) + 1.0
            tasks = [place(url, it, 0.0, end_at) for it in calls]
        done = asyncio.ensure_future(asyncio.gather(*tasks))
        while not done.done():
            sample()
            await asyncio.wait({done}, timeout=0.25)
        results += done.result()[: len(wave)]
    return results


HEADER = ("arm       pattern     n | response ms p50  p95  max | false cuts | split | joined held | no reply | "
          "held-out right | syserr | late | asked w/fb | at a pause | peak MB")


def row(arm: str, pattern: str, results: list[dict[str, Any]], peak_mb: float, pct: Any,
        done: dict[str, int]) -> str:
    """One pattern's line; `done`: the server's counts over it (`counts`)."""
    timed = [r["response"] for r in results if "response" in r and not r["false_cut"]]
    cuts = sum(1 for r in results if r.get("false_cut"))
    split = sum(1 for r in results if r.get("heard", 0) > 1)
    silent = sum(1 for r in results if "response" not in r)
    scored = [r["right"] for r in results if "right" in r]
    late = sum(1 for r in results if r.get("late_s", 0) > 0.05)
    return (f"{arm:9} {pattern:9} {len(results):>4} | {pct(timed, .5) * 1000:>15.0f} {pct(timed, .95) * 1000:>4.0f} "
            f"{max(timed, default=float('nan')) * 1000:>4.0f} | {cuts:>3} {100 * cuts / max(1, len(results)):>4.1f} % "
            f"| {split:>5} | {done['joined']:>6} {done['held']:>4} | {silent:>8} | {sum(scored):>3}/{len(scored):<3} "
            f"{100 * sum(scored) / max(1, len(scored)):>3.0f} % "
            f"| {sum(r['syserr'] for r in results):>6} | {late:>4} "
            f"| {done['whisper']:>5} {done['fallback']:>4} | {done['at_pause']:>4}/{done['ends']:<5} "
            f"| {peak_mb:>7.0f}")


def _answered_in_time(results: list[dict[str, Any]]) -> list[float]:
    """Response times of the turns the bot did not cut."""
    return [r["response"] for r in results if "response" in r and not r["false_cut"]]


def by_kind(results: list[dict[str, Any]], pct: Any) -> str:
    parts = []
    for kind in dict.fromkeys(r["kind"] for r in results):
        mine = [r for r in results if r["kind"] == kind]
        timed = _answered_in_time(mine)
        cuts = sum(1 for r in mine if r.get("false_cut"))
        slowest = max(timed, default=float("nan")) * 1000
        parts.append(f"{kind} n={len(mine)} p50={pct(timed, .5) * 1000:.0f} max={slowest:.0f} cuts={cuts}")
    families = []
    for family in sorted({r["family"] for r in results if r["family"]}):
        mine = [r for r in results if r["family"] == family]
        families.append(f"{family} n={len(mine)} p50={pct(_answered_in_time(mine), .5) * 1000:.0f} "
                        f"right={sum(bool(r.get('right')) for r in mine)}")
    errors = sorted({r["error"] for r in results if r.get("error")})
    # held-out clips by class only: their names and words stay unread (benchmarks/README.md)
    cut = Counter(r["kind"] if r["kind"] in HELDOUT_CLASSES else r["name"] for r in results if r.get("false_cut"))
    return "    by kind: " + "; ".join(parts) \
        + (f"\n    held out by voice: {'; '.join(families)}" if families else "") \
        + (f"\n    errors: {errors}" if errors else "") \
        + (f"\n    cut: {', '.join(f'{name} x{n}' for name, n in sorted(cut.items()))}" if cut else "")
