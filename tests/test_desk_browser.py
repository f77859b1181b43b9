"""The desk page in a real browser (headless Chromium from Debian, driven by
Playwright): log in, watch a transfer arrive live while a fixture call is
replayed through the real server and engine, open it, read the transcript,
claim it, close it; then the supervisor's chart. Screenshots go to the test's
tmp_path and to test-output/ (git-ignored)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import FIXTURES, ROOT
from .staff_helpers import KNOWLEDGE, PASSWORD, make_staff, seed_call, utterance

pytestmark = [pytest.mark.e2e, pytest.mark.engine]
CHROMIUM = "/usr/bin/chromium"
OUTPUT = ROOT / "test-output"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the desk browser test (scripts/setup --test)")
    pytest.skip("Debian's chromium is not installed (scripts/setup --test)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


async def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / name)


async def log_in(browser, base: str, name: str):
    page = await (await browser.new_context(viewport={"width": 1280, "height": 860})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the page asks /api/staff/me before log-in: that one 401 is expected
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and "status of 401" not in m.text else None)
    await page.goto(base + "/desk")
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#feed-state.on", timeout=10_000)  # live feed connected
    assert await page.is_hidden("#login-view") and await page.is_visible("#queue-panel")
    return page, errors


async def test_agent_sees_a_live_transfer_opens_it_and_claims_it(start_server, en_engine, tmp_path):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    await make_staff(server.http)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page, errors = await log_in(browser, server.http, "ann")
        assert await page.inner_text("#whoami") == "ann (agent)"
        assert await page.is_hidden("#supervisor-button") and await page.is_hidden("#supervisor-tab")

        samples, rate = read_wav(FIXTURES / "en_human_person.wav")
        call = asyncio.create_task(replay(server.ws + "/v1/stream", samples, rate,
                                          ReplayOptions(speed=2, max_call_s=60)))
        item = await page.wait_for_selector("#queue li", timeout=40_000)
        seen_at = time.time()
        assert not call.done(), "the transfer must show while the bot is still on the line"
        text = await item.inner_text()
        assert "+15550123" in text and "Caller asked for a person" in text
        assert await page.inner_text("#queue-count") == "1"

        await item.click()
        await page.wait_for_selector("#transcript li.utterance")
        transcript = await page.inner_text("#transcript")
        assert "i want to speak to a person" in transcript and "conf" in transcript
        assert "Caller asked for a person" in await page.inner_text("#call-reason")
        assert "asked for a person" in await page.inner_text("#summary")
        assert (await page.inner_text("#call-next")).startswith("Next: Greet the caller")
        assert await page.inner_text("#suggestions")  # the KB's human-request article at least
        await shot(page, tmp_path, "desk-transfer.png")

        await page.click("#claim")
        await page.locator("#call-message", has_text="Claimed").wait_for()
        assert "claimed · ann" in await page.inner_text("#call-status")
        assert await page.is_disabled("#claim")
        await page.select_option("#disposition", "resolved")
        await page.click("#dispose")
        await page.locator("#call-message", has_text="Call closed.").wait_for()
        await shot(page, tmp_path, "desk-claimed.png")
        result = await call
        assert result.outcome == "handoff:caller_request"
        record = await server.record(result.call_id)
        handoff_line = next(p for p in record.prompts if p["name"] == "handoff")
        assert seen_at < handoff_line["finished_at"]

        await seed_call(server, "call-unsure", [utterance("check my order status", 0.45, 1.0,
                                                           "order_status")], reason=None)
        boss, boss_errors = await log_in(browser, server.http, "sue")
        await boss.click("#supervisor-button")
        assert await boss.is_hidden("#queue-tab")
        bar = await boss.wait_for_selector('#reasons-svg rect[data-reason="caller_request"]')
        assert await bar.get_attribute("data-count") == "1"
        await boss.wait_for_selector("#calls tbody tr")
        assert "resolved" in await boss.inner_text("#calls tbody")
        await shot(boss, tmp_path, "desk-supervisor.png")
        await boss.click("#calls tbody tr:has-text('+15550123') >> nth=0")  # newest: the seeded call
        await boss.wait_for_selector("#transcript mark.low")
        assert await boss.locator("#transcript mark.low").count() == 4  # every word under 0.6
        await browser.close()
    assert errors == [] and boss_errors == []


async def test_a_transfer_no_one_answered_comes_back_as_a_call_back(start_server, en_engine, tmp_path):
    """The gateway reports that the human line did not answer a caller who was still
    waiting: the open desk shows the transfer again, labelled, and an agent claims it."""
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    await make_staff(server.http)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page, errors = await log_in(browser, server.http, "bob")
        await seed_call(server, "pbx-0042", [utterance("agent please", 0.9, 1.0, "human")])
        item = await page.wait_for_selector("#queue li:has-text('+15550123')", timeout=10_000)
        assert "waiting" in await item.inner_text()

        async with aiohttp.ClientSession() as http:
            async with http.post(server.http + "/v1/calls/pbx-0042/human-line", json={
                    "connected": False, "caller_waiting": True, "status": "busy"}) as r:
                assert r.status == 200 and (await r.json())["callback"]
        await page.locator("#queue li", has_text="call back").wait_for(timeout=10_000)
        assert await page.inner_text("#queue-count") == "1"
        await shot(page, tmp_path, "desk-callback.png")

        await page.click("#queue li")
        await page.wait_for_selector("#transcript li.utterance")
        assert await page.inner_text("#call-status") == "callback"
        await page.click("#claim")
        await page.locator("#call-message", has_text="Claimed").wait_for()
        assert "claimed · bob" in await page.inner_text("#call-status")
        await browser.close()
    assert errors == []


async def test_supervisor_reviews_a_completed_call_and_opens_the_report(start_server, tmp_path):
    from voicebot.asr.fake import FakeEngine

    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    await make_staff(server.http)
    await seed_call(server, "done-1", [utterance("where is my order", 0.9, 1.0, "order_status")],
                    reason=None)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        boss, errors = await log_in(browser, server.http, "sue")
        await boss.click("#supervisor-button")
        await boss.click("#review-sample")
        await boss.click("#review-list button[data-call='done-1']")
        await boss.wait_for_selector("#transcript li.utterance")
        await boss.click("#reviewed-ok")
        await boss.locator("#call-message", has_text="feedback recorded").wait_for()
        await boss.click("#supervisor-button")
        await boss.click("#review-sample")
        await boss.locator("#review-list", has_text="Nothing left to review").wait_for()

        async with boss.context.expect_page() as opened:
            await boss.click("#kpi-report")
        report = await opened.value
        await report.wait_for_selector("svg")
        text = await report.inner_text("body")
        assert "calls reviewed by staff\t1" in text and "containment" in text
        await shot(report, tmp_path, "desk-kpi-report.png")
        await browser.close()
    assert errors == []
