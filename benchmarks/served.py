"""The server a benchmark measures: `voicebot serve` started on a free port (from
this checkout or, for an arm, another checkout's interpreter), the processes it
runs and the CPU and memory they use, and the fixtures its callers play."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.replay.client import ReplayOptions, replay  # noqa: E402

FIXTURES = ROOT / "audio_fixtures"
PATHS = {"twilio": "/twilio/media", "native": "/v1/stream"}
# Calls that talk: requests for a person, routine requests, a multi-turn call.
EN_MIX = ["en_human_person.wav", "en_human_robot.wav", "en_order_status.wav",
          "en_password_reset.wav", "en_multi_turn.wav", "real_agent.wav",
          "en_human_real_person_fast.wav", "real_out_of_domain_voicemail.wav"]
KO_MIX = ["ko_human.wav", "ko_order.wav", "ko_password.wav", "ko_english_speech.wav"]
TICK = os.sysconf("SC_CLK_TCK")


THREAD_KEYS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")  # an arm may set a library's threads


def parse_arm(text: str) -> tuple[str, dict[str, str]]:
    name, _, spec = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"--arm {text!r}: give NAME:KEY=VAL,KEY=VAL")
    env = {}
    for item in filter(None, spec.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not (key.startswith("VOICEBOT_") or key in ("PYTHON", *THREAD_KEYS)):
            raise argparse.ArgumentTypeError(f"--arm {text!r}: {item!r} is not VOICEBOT_KEY=VALUE, PYTHON=PATH "
                                             f"or one of {', '.join(THREAD_KEYS)}")
        env[key] = value
    return name, env


async def checkout_of(python: str) -> Path:
    """The directory holding the `voicebot` package that `python` imports."""
    proc = await asyncio.create_subprocess_exec(
        python, "-c", "import pathlib, voicebot; print(pathlib.Path(voicebot.__file__).resolve().parent.parent)",
        cwd="/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"PYTHON={python} cannot import voicebot: {err.decode()[-500:]}")
    return Path(out.decode().strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def family(pid: int) -> list[int]:
    """`pid` and its children (the recognition workers, started from any thread)."""
    children = []
    for kids in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in kids.read_text().split()]
    return [pid, *children]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def start_server(args: argparse.Namespace, db: str, extra_env: dict[str, str] | None = None
                       ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "VOICEBOT_PORT": str(port), "VOICEBOT_DB": db,
           "VOICEBOT_LANGUAGE": args.language, "VOICEBOT_MODEL": args.model or "",
           "VOICEBOT_LOG_LEVEL": "WARNING",
           # the server's own limit (default 64) must not turn the load away
           "VOICEBOT_MAX_CALLS": str(max(int(c) for c in args.counts.split(",")) + args.calls + 1),
           **(extra_env or {})}
    if args.workers:
        env["VOICEBOT_ASR_WORKERS"] = str(args.workers)
    python = env.pop("PYTHON", sys.executable)  # a --turns arm may run another checkout's interpreter
    cwd = ROOT if python == sys.executable else await checkout_of(python)
    proc = subprocess.Popen([python, "-m", "voicebot", "serve"], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def exited() -> None:
        if proc.poll() is not None:
            raise SystemExit("server exited during start-up")

    if not await healthy(base, 120.0, exited):
        raise SystemExit("server did not become healthy")
    return proc, base


async def healthy(base: str, seconds: float, still_starting: Callable[[], None] = lambda: None) -> bool:
    """Whether `base`/healthz answers 200 within `seconds`, asking every 0.2 s;
    `still_starting` raises when the server being waited for has given up."""
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.2)):
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            still_starting()
            await asyncio.sleep(0.2)
    return False


async def when_listening(base: str, protocol: str) -> float:
    """Seconds from stream start until the bot has played the disclosure and the menu."""
    import numpy as np

    result = await replay(base.replace("http", "ws") + PATHS[protocol], np.zeros(8000 * 30, np.int16),
                          8000, ReplayOptions(protocol=protocol, speed=1.0, hangup_at=28.0))
    played = [e["t"] for e in result.events if e["event"] == "played"]
    if len(played) < 2:
        raise SystemExit(f"the bot played {len(played)} prompts to a silent caller; expected 2")
    return played[1]
