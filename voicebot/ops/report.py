"""`voicebot report`: KPIs and fairness from stored calls, as a table, JSON or HTML.

The HTML page is self-contained (charts are inline SVG drawn by matplotlib
with its non-interactive Agg backend, off-line, no scripts), so it can be
mailed, archived, or served to the supervisor desk as is.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from voicebot.dialog.flow import Flow
from voicebot.dialog.lang import PACKS
from voicebot.dialog.understand import interpret
from voicebot.ops.abtest import compare
from voicebot.ops.calls import CallFacts, CallSource
from voicebot.ops.fairness import fairness
from voicebot.ops.kpi import REPEAT_WINDOW_S, IntentOf, compute
from voicebot.ops.text import render_table

FORMATS = ("table", "json", "html")
_RELATIVE = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float) -> float:
    """`7d`, `24h`, `2w` (ago), an ISO date or date-time (UTC unless it says), or epoch seconds."""
    text = text.strip()
    if m := _RELATIVE.fullmatch(text):
        return now - int(m[1]) * _UNITS[m[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use 7d, 24h, 2026-12-01 or 2026-12-01T08:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def flow_understanding(flow: Flow) -> IntentOf:
    """What a text means with every intent of `flow` (no question in context), so
    a recognised turn and its correction are judged alike."""
    intents = list(flow.intents.values())

    def intent_of(language: str, text: str) -> str | None:
        pack = PACKS.get(language)
        return interpret(text, pack, intents).intent if pack is not None else None
    return intent_of


async def build_report(source: CallSource, since: float, until: float, *, threshold: float = 0.6,
                       min_calls: int = 5, utc_offset_h: float = 0.0,
                       controls: dict[str, str] | None = None,
                       intent_of: IntentOf | None = None) -> dict[str, Any]:
    """`controls`: the control variant of each experiment (else the first by name);
    `intent_of`: the understanding for intent accuracy (None: not measured)."""
    calls = await source.calls(since, until)
    later = await source.calls(until, until + REPEAT_WINDOW_S)  # repeat calls after the window
    work = functools.partial(_assemble, calls, later, since, until, threshold=threshold,
                             min_calls=min_calls, utc_offset_h=utc_offset_h, controls=controls,
                             intent_of=intent_of)
    return await asyncio.get_running_loop().run_in_executor(None, work)  # pure, but not quick


def _assemble(calls: list[CallFacts], later: list[CallFacts], since: float, until: float, *,
              threshold: float, min_calls: int, utc_offset_h: float,
              controls: dict[str, str] | None, intent_of: IntentOf | None) -> dict[str, Any]:
    kpis = compute(calls, threshold=threshold, intent_of=intent_of, history=later)
    return {
        "since": since, "until": until, "generated_at": time.time(),
        "confidence_threshold": threshold, "kpis": kpis.to_json(),
        "fairness": fairness(calls, threshold=threshold, intent_of=intent_of,
                             min_calls=min_calls, utc_offset_h=utc_offset_h),
        "ab_tests": compare(calls, controls),
        "not_measured": {} if kpis.csat_offered else {
            "csat": "no post-call survey was offered in this window ([flow] csat_survey)"},
    }


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False)
    if fmt == "html":
        from voicebot.ops.html import render_html  # matplotlib: loaded only for HTML

        return render_html(report)
    return render_table(report)
