"""Capacity beyond one process: two workers on PostgreSQL + Redis behind HAProxy,
side by side with one worker on SQLite, in one run on this machine.

Each arm is the capacity benchmark (benchmarks/capacity.py: its callers, its
levels, its columns) against a different deployment:

  1 x SQLite      one `voicebot serve`, the embedded database (the default)
  2 x PG+Redis    two `voicebot serve` workers sharing one PostgreSQL database
                  and one Redis, behind HAProxy (deploy/haproxy.cfg, leastconn,
                  health-checked on /healthz), as compose.yaml runs them

For each N it prints both arms' rows and, per arm, the calls answered within
--target-ms and the response p95. During the cluster arm a desk connected
straight to worker B also records how long each transfer took to reach it
from the worker that decided it (via Redis).

PostgreSQL, Redis and HAProxy are started here, on temporary directories and
free ports (the Debian packages postgresql, redis-server and haproxy). Both
deployments are up at once and each level runs on one, then on the other
(alternating which goes first), so the machine's other load falls on both
alike. They share this machine's cores: the figures compare deployments, they
do not add capacity.

    .venv/bin/python benchmarks/cluster.py --counts 10
    .venv/bin/python benchmarks/cluster.py --counts 10,20,30 --protocol twilio
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

import capacity  # noqa: E402 - the capacity benchmark's callers and measurements
import served  # noqa: E402 - the server under test

from tests.servers import Postgres, Redis, free_port  # noqa: E402 - throw-away servers

STAFF_TOKEN = "cluster-benchmark-staff-token"
SECRET = "cluster-benchmark-secret-shared-by-every-worker"


@dataclass
class Arm:
    label: str
    base: str
    pids: list[int]
    rows: list[capacity.Row] = field(default_factory=list)
    feed_ms: list[float] = field(default_factory=list)


def haproxy_config(port: int, workers: list[str], path: Path) -> Path:
    """deploy/haproxy.cfg with this machine's addresses: same balancing and checks."""
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    config = re.sub(r"^\s*log .*$", "", config, flags=re.M)
    config = config.replace("bind :8080", f"bind 127.0.0.1:{port}")
    servers = "".join(f"    server bot-{i} {w} check\n" for i, w in enumerate(workers, 1))
    config = re.sub(r"(^\s*server .*\n)+", servers, config, flags=re.M)
    path.write_text(config)
    return path


async def start_proxy(workers: list[str], tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise SystemExit("HAProxy is not installed (apt-get install haproxy)")
    port = free_port()
    config = haproxy_config(port, workers, tmp / "haproxy.cfg")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    if await served.healthy(base, 30.0):  # both workers up in the proxy's eyes
        return proc, base
    raise SystemExit("the proxy never reached a healthy worker")


async def watch_desk(base: str, latencies: list[float]) -> None:
    """A desk on one worker: how long after its decision each transfer arrives."""
    headers = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http, \
            http.get(base + "/api/feed", headers=headers) as feed:
        async for raw in feed.content:
            line = raw.decode().strip()
            if line.startswith("data: ") and '"transfer"' in line:
                message = json.loads(line[6:])
                if message.get("type") == "transfer":
                    latencies.append((time.time() - message["transfer"]["decided_at"]) * 1000)


async def prepare(arm: Arm, args: argparse.Namespace) -> list[tuple]:
    """The callers' audio for this deployment (they speak once the bot listens)."""
    listen_at = await served.when_listening(arm.base, args.protocol)
    return [capacity.caller_audio(e, listen_at) for e in capacity.chosen_fixtures(args)]


@asynccontextmanager
async def one_worker(args: argparse.Namespace, tmp: Path) -> AsyncIterator[Arm]:
    proc, base = await served.start_server(args, str(tmp / "calls.db"))
    try:
        yield Arm("1 x SQLite", base, served.family(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@asynccontextmanager
async def two_workers(args: argparse.Namespace, tmp: Path) -> AsyncIterator[Arm]:
    postgres, redis = Postgres(), Redis()
    procs: list[subprocess.Popen[bytes]] = []
    desk: asyncio.Task[None] | None = None
    try:
        postgres.start()
        shared = {"VOICEBOT_REDIS_URL": redis.url, "VOICEBOT_SECRET_KEY": SECRET,
                  "VOICEBOT_STAFF_TOKEN": STAFF_TOKEN}
        db = await postgres.new_database()
        bases = []
        for name in ("a", "b"):
            proc, base = await served.start_server(
                args, db, {**shared, "VOICEBOT_JOURNAL": str(tmp / f"{name}.journal")})
            procs.append(proc)
            bases.append(base)
        proxy, base = await start_proxy([b.removeprefix("http://") for b in bases], tmp)
        procs.append(proxy)
        arm = Arm("2 x PG+Redis", base, [p for w in procs[:2] for p in served.family(w.pid)])
        desk = asyncio.create_task(watch_desk(bases[1], arm.feed_ms))
        yield arm
    finally:
        if desk is not None:
            desk.cancel()
            await asyncio.gather(desk, return_exceptions=True)
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        redis.remove()
        postgres.remove()


async def main(args: argparse.Namespace) -> int:
    """Both deployments stay up; each level runs on one, then the other (the
    first alternating), so the machine's other load falls on both alike."""
    counts = [int(c) for c in args.counts.split(",")]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        async with one_worker(args, Path(tmp)) as single, \
                two_workers(args, Path(tmp)) as cluster:
            arms = (single, cluster)
            audio = {arm.label: await prepare(arm, args) for arm in arms}
            idle = {arm.label: served.rss_mb(arm.pids) for arm in arms}
            for i, n in enumerate(counts):
                for arm in (arms if i % 2 == 0 else arms[::-1]):
                    arm.rows.append(await capacity.run_level(
                        arm.base, arm.pids, audio[arm.label], n, args, idle[arm.label]))
    print(f"# {os.cpu_count()} CPUs, load {load:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"protocol {args.protocol}, language {args.language}, arrivals over {args.ramp:.0f} s, "
          f"target response p95 {args.target_ms:.0f} ms")
    print("deployment   |    N | first audio ms | response ms   | replied syserr | CPU/call | "
          "MB/call |  wall | server client |")
    for i in range(len(counts)):
        for arm in arms:
            print(f"{arm.label:<12} |", end="")
            capacity.print_row(arm.rows[i], args.target_ms)
    for arm in arms:
        for row in arm.rows:
            print(f"# {arm.label}: N={row.n}: {row.within}/{row.n} calls within "
                  f"{args.target_ms:.0f} ms, response p95 {row.resp_p95 * 1000:.0f} ms")
    if cluster.feed_ms:
        print(f"# desk on worker B: {len(cluster.feed_ms)} transfers, decision → desk "
              f"p50 {served.pct(cluster.feed_ms, 0.5):.0f} ms, "
              f"max {max(cluster.feed_ms):.0f} ms (target 1000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(capacity.parser(__doc__).parse_args())))
