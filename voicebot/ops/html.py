"""The report as one self-contained HTML page with inline SVG charts (matplotlib, off-line)."""

from __future__ import annotations

import html
import io
from typing import Any

from matplotlib.figure import Figure

from voicebot.ops.text import KPI_ROWS, ab_lines, fmt_value, not_measured, stamp

_STYLE = """body{font:15px system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
.flag{color:#a00;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:1em}
.charts svg{max-width:28em;height:auto}"""


def render_html(report: dict[str, Any]) -> str:
    k = report["kpis"]
    f = report["fairness"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>voicebot report</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Calls {escape(stamp(report['since']))} – {escape(stamp(report['until']))}</h1>",
             "<table>" + "".join(
                 f"<tr><th>{escape(label)}</th><td>{escape(fmt_value(k[key], pct))}</td></tr>"
                 for key, label, pct in KPI_ROWS) + "</table>",
             "<div class=charts>", _outcomes_chart(k), _reasons_chart(k["escalations"]),
             _csat_chart(k), "</div>",
             f"<h2>Fairness</h2><p>Each group's figure over the best group's; outside "
             f"{f['band'][0]}–{f['band'][1]} is flagged "
             f"(groups of at least {f['min_calls']} calls).</p>"]
    if f["flags"]:
        parts.append("<p class=flag>" + "<br>".join(
            escape(f"{x['dimension']} = {x['group']}: {x['kpi']} {x['value']} vs best {x['best']} "
                   f"(ratio {x['ratio']})") for x in f["flags"]) + "</p>")
    else:
        parts.append("<p>No group flagged.</p>")
    for dimension, groups in f["dimensions"].items():
        parts.append(f"<h3>{escape(dimension)}</h3>" + _group_table(groups))
        parts.append(f"<div class=charts>{_fairness_chart(dimension, groups)}</div>")
    if report["ab_tests"]:
        parts.append("<h2>A/B tests</h2><pre>" + escape("\n".join(ab_lines(report["ab_tests"])))
                     + "</pre>")
    if report["not_measured"]:
        parts.append("<p>Not measured: " + escape(not_measured(report)) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _group_table(groups: dict[str, Any]) -> str:
    head = "<tr><th>group</th><th>calls</th><th>containment</th><th>understood</th>" \
           "<th>word accuracy</th><th>intent accuracy</th><th>CSAT 4-5</th><th>flagged</th></tr>"
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{g['calls']}</td>"
        + "".join(f"<td>{escape(fmt_value(g[key], True))}</td>"
                  for key in ("containment", "understood", "word_accuracy", "intent_accuracy",
                              "csat_satisfied"))
        + f"<td class=flag>{escape(', '.join(g['flagged']))}</td></tr>" for name, g in groups.items())
    return f"<table>{head}{rows}</table>"


def _figure() -> Figure:
    return Figure(figsize=(5.5, 3.0), dpi=96, layout="constrained")


def _outcomes_chart(k: dict[str, Any]) -> str:
    fig = _figure()
    ax = fig.subplots()
    names = ["completed", "handoffs", "abandoned"]
    ax.bar(names, [k[n] for n in names], color=["#2a7", "#d83", "#888"])
    ax.set_title("Outcomes")
    ax.set_ylabel("calls")
    return svg_of(fig)


def _reasons_chart(escalations: dict[str, int]) -> str:
    if not escalations:
        return "<p>No call was handed to a person.</p>"
    fig = _figure()
    ax = fig.subplots()
    reasons = list(escalations)
    ax.barh(reasons, [escalations[r] for r in reasons], color="#d83")
    ax.invert_yaxis()
    ax.set_title("Handoffs by reason")
    ax.set_xlabel("calls")
    return svg_of(fig)


def _csat_chart(k: dict[str, Any]) -> str:
    if not k["csat_rated"]:
        return ""
    fig = _figure()
    ax = fig.subplots()
    scores = list(k["csat_ratings"])
    ax.bar(scores, [k["csat_ratings"][s] for s in scores],
           color=["#c33", "#d83", "#bb3", "#7b3", "#2a7"])
    ax.set_title(f"CSAT ratings (mean {k['csat_mean']:.2f})")
    ax.set_xlabel("rating")
    ax.set_ylabel("calls")
    return svg_of(fig)


def _fairness_chart(dimension: str, groups: dict[str, Any]) -> str:
    fig = _figure()
    ax = fig.subplots()
    names = list(groups)
    width = 0.4
    for i, (key, colour) in enumerate((("containment", "#2a7"), ("understood", "#37b"))):
        values = [groups[g][key] or 0.0 for g in names]
        ax.bar([x + (i - 0.5) * width for x in range(len(names))], values, width, label=key,
               color=colour)
    ax.set_xticks(range(len(names)), names)
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        if groups[name]["flagged"]:
            tick.set_color("#a00")  # flagged groups, as in the table
    ax.set_ylim(0, 1.05)
    ax.set_title(f"By {dimension}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return svg_of(fig)


def escape(text: Any) -> str:
    return html.escape(str(text))


def svg_of(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML
