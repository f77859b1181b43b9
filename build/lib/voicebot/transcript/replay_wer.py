"""`voicebot replay --staff-token`: after the calls, read each one's free-form
transcripts through the staff API and report their word error rate against
the manifest, beside the decision engine's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from voicebot.replay.suite import CaseResult, error_rate


@dataclass(frozen=True)
class FreeFormWer:
    calls: int  # calls with reference text
    transcribed: int  # of those, calls the free-form pass transcribed
    free_wer: float | None  # over the transcribed calls
    bot_wer: float | None  # the decision engine's, over the same calls
    engine: str


async def free_form_wer(http_base: str, staff_token: str, results: list[CaseResult],
                        wait_s: float = 30.0) -> FreeFormWer:
    """Polls each call's record (at most `wait_s` in all) until every utterance
    the decision engine heard has a free-form transcript, then scores."""
    cases = [r for r in results if r.case.text and r.result is not None and r.result.call_id]
    headers = {"Authorization": f"Bearer {staff_token}"}
    records: dict[str, dict[str, Any]] = {}
    deadline = asyncio.get_running_loop().time() + wait_s
    async with aiohttp.ClientSession(headers=headers) as http:
        for r in cases:
            call_id = r.result.call_id  # type: ignore[union-attr]
            while True:
                async with http.get(f"{http_base}/api/calls/{call_id}") as response:
                    if response.status in (401, 403):
                        raise PermissionError(f"the staff API refused the token ({response.status})")
                    record = await response.json() if response.status == 200 else {}
                spoken = [u for u in record.get("utterances", ()) if u.get("source") == "speech"]
                done = {round(t["start"], 3) for t in record.get("transcripts", ())}
                if all(round(u["start"], 3) in done for u in spoken) or \
                        asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            records[call_id] = record
    return _score(cases, records)


def _score(cases: list[CaseResult], records: dict[str, dict[str, Any]]) -> FreeFormWer:
    free, bot, engines = [], [], set()
    for r in cases:
        record = records.get(r.result.call_id, {})  # type: ignore[union-attr]
        texts = sorted((t for t in record.get("transcripts", ()) if t["status"] == "ok"),
                       key=lambda t: t["start"])
        if not texts:
            continue
        engines |= {f"{t['engine']} {t['model']}" for t in texts}
        reference = " ".join(r.case.text)
        free.append(error_rate(reference, " ".join(t["text"] for t in texts), r.case.language))
        bot.append(error_rate(reference, " ".join(u["text"] for u in record.get("utterances", ())
                                                  if u.get("source") == "speech"), r.case.language))
    return FreeFormWer(len(cases), len(free), sum(free) / len(free) if free else None,
                       sum(bot) / len(bot) if bot else None, ", ".join(sorted(engines)) or "none")


def report(w: FreeFormWer) -> str:
    if w.free_wer is None:
        return (f"free-form transcripts: none for the {w.calls} calls with reference text "
                "(is VOICEBOT_TRANSCRIPT_ENGINE set? with VOICEBOT_TRANSCRIPT_CALLS=handoff only "
                "handed-over calls have them)")
    return (f"free-form transcripts ({w.engine}): mean WER {100 * w.free_wer:.1f} % over "
            f"{w.transcribed} of {w.calls} calls; the bot's own words on the same calls: "
            f"{100 * (w.bot_wer or 0):.1f} %")
