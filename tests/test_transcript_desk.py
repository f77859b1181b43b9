"""The desk page in a real browser (Debian's chromium, Playwright): a handed-over
call is open when its free-form transcript arrives; the desk reloads it from the
feed's notice and shows what the caller said under what the bot understood."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voicebot.app import DESK, REGISTRY
from voicebot.asr.fake import FakeEngine
from voicebot.transcript.base import FreeText
from voicebot.transcript.desk import DeskSink
from voicebot.types import Word

from .staff_helpers import KNOWLEDGE, make_staff, seed_call, utterance
from .test_desk_browser import CHROMIUM, log_in, shot

pytestmark = pytest.mark.e2e
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (scripts/setup --test)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")
SAID = "Weasels have eaten our phone system."


async def test_the_open_desk_shows_the_callers_words_when_they_are_ready(start_server, tmp_path):
    server = await start_server(FakeEngine(), knowledge_dir=KNOWLEDGE)
    await make_staff(server.http)
    await seed_call(server, "call-weasels", [utterance("i need to", 0.31, 1.0)],
                    reason=None)  # stored, not yet on the queue
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page, errors = await log_in(browser, server.http, "sue")  # a supervisor sees every call
        await page.evaluate("openCall('call-weasels')")
        await page.wait_for_selector("#transcript li.utterance")
        assert "bot understood: i need to" in await page.inner_text("#transcript")
        assert await page.locator(".u-free").count() == 0

        store = server.app[REGISTRY].services.store
        words = tuple(Word(w, 0.9 if w != "Weasels" else 0.4, i * 0.4, i * 0.4 + 0.3)
                      for i, w in enumerate(SAID.split()))
        await DeskSink(store, server.app[DESK]).deliver(
            "call-weasels", FreeText(1.0, 2.5, SAID, 0.86, words, "whisper", "whisper-tiny.en"), True)
        free = await page.wait_for_selector(".u-free", timeout=10_000)
        assert (await free.inner_text()).replace("\n", " ") == f"caller said: {SAID}"
        assert await page.locator(".u-free mark.low").inner_text() == "Weasels"
        assert await free.get_attribute("title") == "whisper whisper-tiny.en"
        await shot(page, tmp_path, "desk-free-form-transcript.png")
        await browser.close()
    assert errors == []
