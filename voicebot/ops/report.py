"""`voicebot report`: KPIs and fairness from stored calls, as a table, JSON or HTML.

The HTML page is self-contained (charts are inline SVG drawn by matplotlib
with its non-interactive Agg backend, off-line, no scripts), so it can be
mailed, archived, or served to the supervisor desk as is.
"""

from __future__ import annotations

import asyncio
import functools
import html
import io
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
        from voicebot.ops.html import render_html

        return render_html(report)
    return render_table(report)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value * 100:.1f} %"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


KPI_ROWS = (("calls", "calls", False), ("ended", "ended", False),
            ("containment", "containment (no person needed)", True),
            ("escalation_rate", "escalation rate", True), ("abandoned", "abandoned", False),
            ("handle_median_s", "bot handle time, median (s)", False),
            ("handle_p90_s", "bot handle time, p90 (s)", False),
            ("repeat_rate", "repeat callers within 7 days", True),
            ("understood", "speech turns understood", True),
            ("reviewed_calls", "calls reviewed by staff", False),
            ("wer", "word error rate (reviewed)", True),
            ("intent_accuracy", "intent accuracy (reviewed)", True),
            ("csat_mean", "CSAT, mean rating (1-5)", False),
            ("csat_satisfied", "CSAT, ratings of 4 or 5", True),
            ("csat_response_rate", "CSAT response rate", True),
            ("csat_rated", "CSAT ratings", False))
AB_FIGURES = ("containment", "escalation_rate", "csat_satisfied")


def render_table(report: dict[str, Any]) -> str:
    k = report["kpis"]
    lines = [f"voicebot report {_stamp(report['since'])} - {_stamp(report['until'])}", ""]
    lines += [f"  {label:<34} {_fmt(k[key], pct)}" for key, label, pct in KPI_ROWS]
    lines += ["", "  escalations by reason:"]
    lines += [f"    {reason:<32} {n}" for reason, n in k["escalations"].items()] or ["    none"]
    f = report["fairness"]
    lines += ["", f"fairness (flagged outside {f['band'][0]}-{f['band'][1]} of the best group, "
              f"groups of at least {f['min_calls']} calls)"]
    for dimension, groups in f["dimensions"].items():
        lines.append(f"  {dimension}:")
        for group, g in groups.items():
            mark = "  FLAGGED: " + ", ".join(g["flagged"]) if g["flagged"] else ""
            lines.append(f"    {group:<22} {g['calls']:>5} calls"
                         f"  containment {_fmt(g['containment'], True):>8}"
                         f"  understood {_fmt(g['understood'], True):>8}"
                         f"  csat 4-5 {_fmt(g['csat_satisfied'], True):>8}{mark}")
    lines += ab_lines(report["ab_tests"])
    if report["not_measured"]:
        lines += ["", f"  not measured: {not_measured(report)}"]
    return "\n".join(lines) + "\n"


def not_measured(report: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in report["not_measured"].items())


def ab_lines(tests: dict[str, Any]) -> list[str]:
    lines = []
    for name, test in tests.items():
        lines += ["", f"A/B test {name} (control: {test['control']})"]
        for variant, arm in test["variants"].items():
            versus = test["against_control"].get(variant, {})
            cells = []
            for figure in AB_FIGURES:
                f = arm[figure]
                ci = f"[{_fmt(f['ci95'][0], True)}, {_fmt(f['ci95'][1], True)}]" if f["ci95"] else ""
                v = versus.get(figure)
                verdict = "" if v is None else (
                    f" p={v['p_value']}" + (" SIGNIFICANT" if v["significant"] else ""))
                cells.append(f"{figure} {_fmt(f['rate'], True)} {ci}{verdict}")
            cells.append(f"csat mean {_fmt(arm['csat']['mean'])}")
            lines.append(f"    {variant:<14} {arm['calls']:>5} calls  " + "  ".join(cells))
    return lines


def escape(text: Any) -> str:
    return html.escape(str(text))


def svg_of(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML
