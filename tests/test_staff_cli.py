"""`voicebot staff add-user` as an operator runs it, then logging in with it."""

from __future__ import annotations

import os
import subprocess
import sys

from voicebot.asr.fake import FakeEngine

from .conftest import ROOT
from .staff_helpers import Client


def staff_cli(db, *args: str, stdin: str = "", env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, "-m", "voicebot.cli", "staff", *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VOICEBOT_DB": str(db), **(env or {})})


async def test_first_supervisor_created_from_the_shell_can_log_in(start_server, tmp_path):
    db = tmp_path / "desk.db"
    made = staff_cli(db, "add-user", "sam", "--role", "supervisor", "--token", "laptop",
                     stdin="a long enough password\n")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) > 30 and "password" not in made.stdout
    assert staff_cli(db, "add-user", "sam", "--role", "agent", stdin="a long enough password\n"
                     ).returncode == 2  # exists
    short = staff_cli(db, "add-user", "al", "--role", "agent", env={"VOICEBOT_STAFF_PASSWORD": "short"})
    assert short.returncode == 2 and "10 characters" in short.stderr
    assert staff_cli(db, "list").stdout.split() == ["sam", "supervisor"]

    server = await start_server(FakeEngine(), db=str(db), staff_token="")
    browser = Client(server.http)
    status, me = await browser.post("/api/staff/login", {"name": "sam",
                                                        "password": "a long enough password"})
    assert status == 200 and me["role"] == "supervisor"
    status, me = await Client(server.http, token).get("/api/staff/me")
    assert status == 200 and me == {"name": "sam", "role": "supervisor", "via": "api"}
