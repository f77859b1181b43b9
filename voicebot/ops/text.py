"""The report as plain text (`voicebot report`'s table), and the formatting the
HTML page shares with it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_value(value: Any, percent: bool = False) -> str:
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
    lines = [f"voicebot report {stamp(report['since'])} - {stamp(report['until'])}", ""]
    lines += [f"  {label:<34} {fmt_value(k[key], pct)}" for key, label, pct in KPI_ROWS]
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
                         f"  containment {fmt_value(g['containment'], True):>8}"
                         f"  understood {fmt_value(g['understood'], True):>8}"
                         f"  csat 4-5 {fmt_value(g['csat_satisfied'], True):>8}{mark}")
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
                ci = f"[{fmt_value(f['ci95'][0], True)}, {fmt_value(f['ci95'][1], True)}]" if f["ci95"] else ""
                v = versus.get(figure)
                verdict = "" if v is None else (
                    f" p={v['p_value']}" + (" SIGNIFICANT" if v["significant"] else ""))
                cells.append(f"{figure} {fmt_value(f['rate'], True)} {ci}{verdict}")
            cells.append(f"csat mean {fmt_value(arm['csat']['mean'])}")
            lines.append(f"    {variant:<14} {arm['calls']:>5} calls  " + "  ".join(cells))
    return lines
