"""Contact-center KPIs from stored calls. Pure functions: no I/O, no clock.

- containment: calls the bot finished without a person, of the calls that ended;
- escalation rate, overall and by reason, of the calls that ended;
- bot handle time: start to end of the bot's part (median, p90, mean);
- repeat callers: calls followed by another from the same number within 7 days
  (1 - that is a first-contact-resolution proxy); withheld numbers don't count;
- understood: speech turns at or above the confidence threshold;
- accuracy from staff review: WER and intent accuracy over the turns of calls
  someone reviewed, taking each turn as right unless marked wrong (with the
  correction as the reference). Intent accuracy: the recognised text means what
  the correction means (the same understanding applied to both);
- CSAT from the optional post-call survey: the mean rating (1-5), the share
  of ratings that are 4 or 5, and the response rate (rated, of the surveys
  offered; skipping by silence, another key or hanging up counts as offered).
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from voicebot.ops.calls import CallFacts

REPEAT_WINDOW_S = 7 * 86400
WITHHELD = ("", "anonymous", "unknown", "restricted", "private")

IntentOf = Callable[[str, str], str | None]  # (language, text) → intent


@dataclass(frozen=True)
class Kpis:
    calls: int
    ended: int
    completed: int
    handoffs: int
    abandoned: int
    containment: float | None
    escalation_rate: float | None
    escalations: dict[str, int]
    handle_median_s: float | None
    handle_p90_s: float | None
    handle_mean_s: float | None
    repeat_rate: float | None
    repeat_base: int  # calls with a known number
    understood: float | None
    speech_turns: int
    reviewed_calls: int
    reviewed_turns: int
    wer: float | None
    intent_accuracy: float | None
    csat_offered: int = 0
    csat_rated: int = 0
    csat_mean: float | None = None
    csat_satisfied: float | None = None  # share of ratings 4-5
    csat_response_rate: float | None = None
    csat_ratings: dict[str, int] = field(default_factory=dict)  # "1".."5" -> count

    def to_json(self) -> dict[str, object]:
        return {k: _round(v) for k, v in self.__dict__.items()}


def compute(calls: list[CallFacts], *, threshold: float = 0.6, intent_of: IntentOf | None = None,
            history: Iterable[CallFacts] = ()) -> Kpis:
    """`history`: more calls (e.g. the 7 days after the window) for the repeat-caller count."""
    ended = [c for c in calls if c.outcome]
    completed = sum(c.outcome == "completed" for c in ended)
    handoffs = [c for c in ended if c.outcome == "handoff"]
    reasons: dict[str, int] = defaultdict(int)
    for c in handoffs:
        reasons[c.handoff_reason or "unknown"] += 1
    handle = sorted(h for c in ended if (h := c.handle_s) is not None)
    turns = [t for c in calls for t in c.turns]
    reviewed = [c for c in calls if c.reviewed]
    wer, intent_acc, n_reviewed = _accuracy(reviewed, intent_of)
    repeat, base = _repeat_rate(calls, history)
    return Kpis(
        calls=len(calls), ended=len(ended), completed=completed, handoffs=len(handoffs),
        abandoned=sum(c.outcome == "abandoned" for c in ended),
        containment=_share(completed, len(ended)),
        escalation_rate=_share(len(handoffs), len(ended)),
        escalations=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        handle_median_s=statistics.median(handle) if handle else None,
        handle_p90_s=_quantile(handle, 0.9), handle_mean_s=statistics.fmean(handle) if handle else None,
        repeat_rate=repeat, repeat_base=base,
        understood=_share(sum(t.confidence >= threshold for t in turns), len(turns)),
        speech_turns=len(turns), reviewed_calls=len(reviewed), reviewed_turns=n_reviewed,
        wer=wer, intent_accuracy=intent_acc, **csat(calls))


def csat(calls: list[CallFacts]) -> dict[str, Any]:
    offered = sum(bool(c.survey) for c in calls)
    ratings = [c.csat for c in calls if c.csat is not None]
    return {"csat_offered": offered, "csat_rated": len(ratings),
            "csat_mean": statistics.fmean(ratings) if ratings else None,
            "csat_satisfied": _share(sum(r >= 4 for r in ratings), len(ratings)),
            "csat_response_rate": _share(len(ratings), offered),
            "csat_ratings": {str(score): ratings.count(score) for score in range(1, 6)}}


def _accuracy(reviewed: list[CallFacts], intent_of: IntentOf | None
              ) -> tuple[float | None, float | None, int]:
    errors = words = intents_right = n = 0
    for call in reviewed:
        for t in call.turns:
            reference = t.text if t.correction is None else t.correction
            ref, hyp = reference.lower().split(), t.text.lower().split()
            errors += edit_distance(ref, hyp)
            words += len(ref)
            n += 1
            if intent_of is not None:
                intents_right += intent_of(call.language, t.text) == intent_of(call.language,
                                                                               reference)
    wer = errors / words if words else None
    intent_acc = intents_right / n if n and intent_of is not None else None
    return wer, intent_acc, n


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def _repeat_rate(calls: list[CallFacts], history: Iterable[CallFacts]) -> tuple[float | None, int]:
    by_caller: dict[str, list[float]] = defaultdict(list)
    for c in [*calls, *history]:
        if c.caller.strip().lower() not in WITHHELD:
            by_caller[c.caller].append(c.started_at)
    for times in by_caller.values():
        times.sort()
    known = [c for c in calls if c.caller.strip().lower() not in WITHHELD]
    repeats = 0
    for c in known:
        times = by_caller[c.caller]
        later = bisect.bisect_right(times, c.started_at)  # the first call after this one
        repeats += later < len(times) and times[later] <= c.started_at + REPEAT_WINDOW_S
    return _share(repeats, len(known)), len(known)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def _round(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value
