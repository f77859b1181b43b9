"""benchmarks/understanding.py: its scripted caller follows the bot (a fake bot
for the confirmation branch today's server lacks), its scoring, and one tiny
run against a real `voicebot serve`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import understanding  # noqa: E402
from understanding_caller import Caller, Outcome, Script, Turn  # noqa: E402

TONE = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)  # 1 s


def fake_bot(heard: list[int]) -> web.Application:
    """Says the menu, asks `confirm_human` after the first utterance and hands
    off after the second; `heard` gets each utterance's length in samples."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        prompts = iter(["menu", "confirm_human", "handoff"])
        played: asyncio.Queue[str] = asyncio.Queue()

        async def say(name: str) -> None:
            await ws.send_json({"event": "prompt", "name": name, "text": name})
            await ws.send_bytes(np.zeros(1600, "<i2").tobytes())
            await ws.send_json({"event": "mark", "name": f"1-{name}"})

        voiced = 0
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event["event"] == "start":
                    await say(next(prompts))
                elif event["event"] == "mark" and event["name"] == "1-handoff":
                    await ws.send_json({"event": "handoff", "reason": "caller_request"})
                    await ws.send_json({"event": "end", "reason": "handoff:caller_request"})
                    await ws.close()
                elif event["event"] == "mark":
                    played.put_nowait(event["name"])
            elif msg.type == WSMsgType.BINARY:
                frame = np.frombuffer(msg.data, "<i2")
                if np.abs(frame).max() > 0:
                    voiced += frame.size
                elif voiced:  # the end of an utterance
                    heard.append(voiced)
                    voiced = 0
                    await say(next(prompts))
        return ws

    app = web.Application()
    app.router.add_get("/v1/stream", handler)
    return app


async def test_the_caller_answers_the_confirmation_with_its_yes_clip(aiohttp_client) -> None:
    heard: list[int] = []
    client = await aiohttp_client(fake_bot(heard))
    outcome = Outcome("ask.wav", "fake", "en", "person_request", None)
    script = Script(TONE, TONE[:4000], "yes.wav", None)
    async with client.ws_connect("/v1/stream") as ws:
        await asyncio.wait_for(Caller(ws, speed=4, number="+15550000001").run(script, outcome), 30)
    assert outcome.turns == [Turn("ask.wav", "prompt:confirm_human"), Turn("yes.wav", "handoff:caller_request")]
    assert outcome.confirmed and outcome.handoff == "caller_request" and not outcome.error
    assert heard == [8000, 4000]  # the clip, then the yes clip, each whole


def outcome(cls: str, *replies: str, handoff: str | None = None, intent: str | None = None,
            answers: tuple[str, ...] = ()) -> Outcome:
    o = Outcome("x.wav", "a", "en", cls, intent, [Turn("x.wav", r) for r in replies], handoff)
    o.confirmed = "prompt:confirm_human" in replies
    o.answers = list(answers)
    return o


@pytest.mark.parametrize(("o", "expected"), [
    (outcome("person_request", "handoff:caller_request", handoff="caller_request"),
     {"first": True, "conf": False}),
    (outcome("person_request", "prompt:confirm_human", "handoff:caller_request", handoff="caller_request"),
     {"first": False, "conf": True}),
    (outcome("person_request", "prompt:didnt_catch"), {"first": False, "conf": False}),
    (outcome("routine", "prompt:order_status", intent="order_status", answers=("order_status",)),
     {"first": True, "answered": True, "false_cr": False}),
    (outcome("routine", "prompt:password_reset", intent="order_status", answers=("password_reset",)),
     {"first": False, "answered": False}),
    (outcome("person_word_no_request", "prompt:confirm_human", "prompt:menu"),
     {"first": False, "conf": True, "false_cr": False}),
    (outcome("person_word_no_request", "handoff:caller_request", handoff="caller_request"),
     {"first": False, "conf": False, "false_cr": True}),
    (outcome("out_of_domain", "prompt:didnt_catch", "handoff:low_confidence", handoff="low_confidence"),
     {"first": True, "rep_low": True, "false_cr": False}),
    (outcome("out_of_domain", "prompt:didnt_catch", "handoff:caller_request", handoff="caller_request"),
     {"first": True, "rep_low": False, "false_cr": True}),
    (outcome("noise", "none"), {"first": True, "false_cr": False}),
])
def test_scoring(o: Outcome, expected: dict[str, bool]) -> None:
    got = understanding.score(o)
    assert {k: got[k] for k in expected} == expected


def test_arms_are_parsed_and_bad_ones_refused() -> None:
    assert understanding.parse_arm("flow:") == ("flow", {})
    assert understanding.parse_arm("g:VOICEBOT_ASR_SEARCH=grammar,VOICEBOT_X=1") == (
        "g", {"VOICEBOT_ASR_SEARCH": "grammar", "VOICEBOT_X": "1"})
    assert understanding.parse_arm("t:PYTHON=/x/bin/python")[1] == {"PYTHON": "/x/bin/python"}
    assert understanding.parse_arm("spin:OPENBLAS_NUM_THREADS=2")[1] == {"OPENBLAS_NUM_THREADS": "2"}
    for bad in (":VOICEBOT_X=1", "a:PATH=/tmp", "a:VOICEBOT_X"):
        with pytest.raises(Exception, match="--arm"):
            understanding.parse_arm(bad)


def test_another_interpreter_runs_its_own_checkout() -> None:
    """`python -m voicebot` imports from its working directory, so an arm's
    PYTHON must run in the checkout that interpreter has installed."""
    assert asyncio.run(understanding.checkout_of(sys.executable)) == ROOT
    with pytest.raises(SystemExit, match="cannot import voicebot"):
        asyncio.run(understanding.checkout_of("/usr/bin/python3"))


def test_a_tiny_run_against_a_real_server(tmp_path) -> None:
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "understanding.py"), "--lang", "en", "--limit", "1",
         "--classes", "routine,out_of_domain", "--speed", "4", "--arm", "today:", "--workers", "1",
         "--json", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "routine" in proc.stdout and "out_of_domain" in proc.stdout
    result = json.loads(out.read_text())
    assert [(r["class"], r["n"], r["errors"]) for r in result["rows"]] == [
        ("routine", 1, 0), ("out_of_domain", 1, 0)]
    for call in result["calls"]:  # the bot answered each call (no timeouts, no dead server)
        assert call["turns"] and call["turns"][0]["reply"] != "none", call
