"""The container files, checked without a Docker daemon: compose.yaml's
structure (two workers, PostgreSQL, Redis, a proxy, wired to each other), the
proxy's configuration (`haproxy -c` where HAProxy is installed), and the
Dockerfile's health check, run against a real server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from urllib.parse import urlsplit

import pytest
import yaml

from voicebot.app import DRAIN
from voicebot.asr.fake import FakeEngine
from voicebot.config import Settings

from .conftest import ROOT

SETTINGS = {"VOICEBOT_" + f.name.upper() for f in fields(Settings)}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolated(value: str) -> str:
    """As compose would pass it, with every `${VARIABLE...}` set."""
    return re.sub(r"\$\{[^}]*\}", "set-by-operator", value)


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_compose_runs_two_workers_on_postgres_and_redis_behind_a_proxy():
    services = compose()["services"]
    assert set(services) == {"bot-1", "bot-2", "proxy", "postgres", "redis"}
    bots = [services["bot-1"], services["bot-2"]]
    volumes = set()
    for bot in bots:
        env = bot["environment"]
        assert set(env) <= SETTINGS, set(env) - SETTINGS  # every variable is a real setting
        db, redis = (urlsplit(interpolated(env[k])) for k in ("VOICEBOT_DB", "VOICEBOT_REDIS_URL"))
        assert db.scheme == "postgresql" and db.hostname in services
        assert redis.scheme == "redis" and redis.hostname in services
        assert "${VOICEBOT_SECRET_KEY" in env["VOICEBOT_SECRET_KEY"]  # one key, given to all
        proxy_ip = services["proxy"]["networks"]["voicebot"]["ipv4_address"]
        assert env["VOICEBOT_TRUSTED_PROXIES"] == proxy_ip
        grace = int(bot["stop_grace_period"].rstrip("s"))
        assert grace > float(env["VOICEBOT_DRAIN_S"])  # Docker waits out the drain
        assert {"postgres", "redis"} <= set(bot["depends_on"])
        volumes.update(v.split(":")[0] for v in bot["volumes"])
    assert len(volumes) == 2  # each worker its own journal
    assert services["proxy"]["volumes"][0].startswith("./deploy/haproxy.cfg:")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]


def test_the_proxy_balances_on_healthz_across_both_workers():
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert re.search(r"option httpchk GET /healthz", config)
    assert {"bot-1", "bot-2"} <= set(re.findall(r"^\s*server (\S+) ", config, re.M))
    assert "timeout tunnel" in config  # calls are long WebSockets
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("HAProxy is not installed: its own check of the configuration was not run")
    done = subprocess.run([haproxy, "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Configuration file is valid" in done.stdout + done.stderr


def test_the_image_is_small_non_root_and_copies_what_exists():
    lines = dockerfile()
    base = next(line for line in lines if line.startswith("FROM "))
    version = re.search(r"python:(\d+)\.(\d+)-slim", base)
    assert version and (int(version[1]), int(version[2])) >= (3, 11)
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
        if line.startswith("ENV "):
            names = set(re.findall(r"(VOICEBOT_\w+)=", line))
            assert names <= SETTINGS, names - SETTINGS
    assert json.loads(next(x for x in lines if x.startswith("CMD "))[4:]) == ["voicebot", "serve"]


def healthcheck_command() -> list[str]:
    line = next(x for x in dockerfile() if x.startswith("HEALTHCHECK "))
    return json.loads(line.split(" CMD ", 1)[1])


@pytest.mark.e2e
async def test_the_image_health_check_passes_when_ready_and_fails_when_draining(start_server):
    server = await start_server(FakeEngine())
    command = healthcheck_command()
    assert command[0] == "python"

    async def check() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *command[1:], env={"VOICEBOT_PORT": str(server.port)},
            stderr=asyncio.subprocess.DEVNULL)
        return await proc.wait()

    assert await check() == 0
    server.app[DRAIN].since = time.monotonic()  # as after SIGTERM (the real one: test_cluster)
    assert await check() != 0


def test_the_installed_package_has_every_data_file():
    """The image installs voicebot as a package (not from the source tree): every
    file it reads (flows, migrations, the desk's page) must be package data."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["voicebot"]
    data = [p.relative_to(ROOT / "voicebot").as_posix() for p in (ROOT / "voicebot").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    missing = [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert data and not missing, missing
