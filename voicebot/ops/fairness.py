"""Does the bot work equally well for every caller group?

The calls are split by language, line quality (8 kHz telephone vs wideband),
time of day, and each label the deployment attaches (`CallTagged`). For each
group and each figure where higher is better, the disparity ratio is the
group's value over the best group's. A group outside 0.8-1.25 (the
four-fifths rule) is flagged, if it has at least `min_calls` calls (for CSAT,
`min_calls` ratings): a handful of calls says nothing about a group.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.ops.calls import CallFacts
from voicebot.ops.kpi import IntentOf, Kpis, compute

LOW, HIGH = 0.8, 1.25
AB_PREFIX = "ab_"
HOURS = ((0, "night 00-06"), (6, "morning 06-12"), (12, "afternoon 12-18"), (18, "evening 18-24"))

# the figures compared, each higher-is-better
FIGURES: dict[str, Callable[[Kpis], float | None]] = {
    "containment": lambda k: k.containment,
    "understood": lambda k: k.understood,
    "word_accuracy": lambda k: None if k.wer is None else max(0.0, 1.0 - k.wer),
    "intent_accuracy": lambda k: k.intent_accuracy,
    "csat_satisfied": lambda k: k.csat_satisfied,
}
# how many observations a figure rests on (a group needs min_calls of them to be flagged)
BASES: dict[str, Callable[[Kpis], int]] = {"csat_satisfied": lambda k: k.csat_rated}


def _all_calls(k: Kpis) -> int:
    return k.calls


@dataclass(frozen=True)
class Flag:
    dimension: str
    group: str
    kpi: str
    value: float
    best: float
    ratio: float


def time_band(started_at: float, utc_offset_h: float = 0.0) -> str:
    hour = time.gmtime(started_at + utc_offset_h * 3600).tm_hour
    return [name for start, name in HOURS if hour >= start][-1]


def groupings(call: CallFacts, utc_offset_h: float = 0.0) -> dict[str, str]:
    groups = {"language": call.language or "unknown", "line": call.labels.get("line", "unknown"),
              "time_of_day": time_band(call.started_at, utc_offset_h)}
    groups.update({k: v for k, v in call.labels.items()
                   if k != "line" and not k.startswith(AB_PREFIX)})  # variants: see abtest
    return groups


def fairness(calls: list[CallFacts], *, threshold: float = 0.6, intent_of: IntentOf | None = None,
             min_calls: int = 5, utc_offset_h: float = 0.0) -> dict[str, object]:
    split: dict[str, dict[str, list[CallFacts]]] = defaultdict(lambda: defaultdict(list))
    for call in calls:
        for dimension, group in groupings(call, utc_offset_h).items():
            split[dimension][group].append(call)
    dimensions: dict[str, object] = {}
    flags: list[Flag] = []
    for dimension, groups in sorted(split.items()):
        kpis = {g: compute(cs, threshold=threshold, intent_of=intent_of) for g, cs in groups.items()}
        dimension_flags, ratios = _compare(dimension, kpis, min_calls)
        flags += dimension_flags
        dimensions[dimension] = {
            g: {"calls": k.calls, "enough_calls": k.calls >= min_calls, "csat_rated": k.csat_rated,
                **{f: _r(fig(k)) for f, fig in FIGURES.items()},
                "ratios": ratios[g], "flagged": sorted(f.kpi for f in dimension_flags if f.group == g)}
            for g, k in sorted(kpis.items())}
    return {"band": [LOW, HIGH], "min_calls": min_calls, "dimensions": dimensions,
            "flags": [f.__dict__ | {"value": _r(f.value), "best": _r(f.best), "ratio": _r(f.ratio)}
                      for f in flags]}


def _compare(dimension: str, kpis: dict[str, Kpis], min_calls: int
             ) -> tuple[list[Flag], dict[str, dict[str, float | None]]]:
    flags: list[Flag] = []
    ratios: dict[str, dict[str, float | None]] = {g: {} for g in kpis}
    for name, figure in FIGURES.items():
        base = BASES.get(name, _all_calls)
        values = {g: v for g, k in kpis.items()
                  if base(k) >= min_calls and (v := figure(k)) is not None}
        best = max(values.values(), default=None)
        for group, kpi in kpis.items():
            value = figure(kpi)
            if best is None or not best or value is None:
                ratios[group][name] = None
                continue
            ratio = value / best
            ratios[group][name] = _r(ratio)
            if group in values and len(values) > 1 and not LOW <= ratio <= HIGH:
                flags.append(Flag(dimension, group, name, value, best, ratio))
    return flags, ratios


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
