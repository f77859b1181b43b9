"""A/B tests: per-call variants of the settings and of the flow a call runs
with, and the comparison of their outcomes.

An experiments file (TOML, `VOICEBOT_EXPERIMENTS`) names each experiment as a
table and each variant as a sub-table with a `weight` (default 1) and the
settings it changes; the first variant is the control:

    [threshold]
    control = { weight = 1 }
    lower = { weight = 1, confidence_threshold = 0.5 }

Each call gets one variant per experiment, from a hash of the experiment's name
and the call's id (the same call always lands in the same variant), runs with
its settings, and is labelled `ab_<experiment>=<variant>` for the report.
A flow's own experiments (`[experiments.*]` in the flow file: prompt texts,
branches, thresholds; voicebot.dialog.variants) are split by the same hash.
The report compares containment, escalation rate and CSAT (the share of
ratings 4-5) per variant with Wilson 95 % intervals and a two-proportion
z-test against the control (Bonferroni-corrected when there are several
variants).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.call.session import CallServices
from voicebot.config import Settings, coerce_setting
from voicebot.dialog.flow import Flow
from voicebot.dialog.variants import FlowExperiment
from voicebot.dialog.varied import with_variants
from voicebot.errors import ConfigError
from voicebot.events import CallTagged
from voicebot.ops.calls import CallFacts
from voicebot.ops.kpi import csat
from voicebot.ops.tags import KEY

LABEL_PREFIX = "ab_"
# what a variant may change: settings one call runs with, nothing process-wide
PER_CALL = ("disclosure_text", "confidence_threshold", "low_confidence_turns", "no_input_timeout_s",
            "no_input_turns", "unresolved_turns", "vad_aggressiveness", "vad_start_ms",
            "vad_hangover_ms", "vad_preroll_ms", "max_utterance_s", "turn_complete_ms", "turn_mid_phrase_ms",
            "turn_join_ms")
Z95 = 1.959964
MIN_ARM = 10  # fewer calls in a variant than this: never called significant


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    changes: dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]

    def assign(self, call_id: str) -> Variant:
        digest = hashlib.sha256(f"{self.name}\0{call_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in self.variants)
        for variant in self.variants:
            point -= variant.weight
            if point < 0:
                return variant
        return self.variants[-1]


class Experiments:
    def __init__(self, experiments: list[Experiment]) -> None:
        self.experiments = experiments

    @classmethod
    def from_file(cls, path: str | Path, base: Settings) -> Experiments:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("experiments", f"cannot read {path}: {exc}") from None
        return cls.parse(raw, base)

    @classmethod
    def parse(cls, raw: dict[str, Any], base: Settings) -> Experiments:
        experiments: list[Experiment] = []
        changed: set[str] = set()
        for name, table in raw.items():
            if not KEY.fullmatch(LABEL_PREFIX + name) or not isinstance(table, dict) or len(table) < 2:
                raise ConfigError("experiments",
                                  f"[{name}]: a lower-case name with two or more variants")
            variants = [_variant(name, v, spec, base) for v, spec in table.items()]
            keys = {k for v in variants for k in v.changes}
            if keys & changed:
                raise ConfigError("experiments", f"[{name}] changes {sorted(keys & changed)}, "
                                  "which another experiment changes too")
            changed |= keys
            experiments.append(Experiment(name, tuple(variants)))
        return cls(experiments)

    def prompt_texts(self) -> list[str]:
        """Disclosure wordings of the variants, to render before the first call needs them."""
        return [v.changes["disclosure_text"] for e in self.experiments for v in e.variants
                if "disclosure_text" in v.changes]

    def services_for(self, call_id: str, services: CallServices) -> CallServices:
        """The services this call runs with; labels the call with its variants."""
        changes: dict[str, Any] = {}
        for experiment in self.experiments:
            variant = experiment.assign(call_id)
            changes.update(variant.changes)
            services.events.publish(CallTagged(call_id, LABEL_PREFIX + experiment.name, variant.name))
        if changes:
            settings = dataclasses.replace(services.settings, **changes)
            services = dataclasses.replace(services, settings=settings)
        return vary_flow(call_id, services, taken={e.name for e in self.experiments})

    def names(self) -> set[str]:
        return {e.name for e in self.experiments}


def flow_experiment(experiment: FlowExperiment) -> Experiment:
    """A flow's experiment, split like any other (its variants change the flow)."""
    return Experiment(experiment.name,
                      tuple(Variant(v.name, v.weight, {}) for v in experiment.variants))


def vary_flow(call_id: str, services: CallServices, taken: set[str] | None = None) -> CallServices:
    """The flow this call hears: one variant of each of the flow's experiments;
    one the experiments file already runs under that name (`taken`) is left out."""
    chosen: dict[str, str] = {}
    for experiment in services.flow.experiments:
        if experiment.name not in (taken or set()):
            chosen[experiment.name] = flow_experiment(experiment).assign(call_id).name
            services.events.publish(CallTagged(call_id, LABEL_PREFIX + experiment.name,
                                               chosen[experiment.name]))
    if not chosen:
        return services
    return dataclasses.replace(services, flow=with_variants(services.flow, chosen))


def controls_of(settings: Settings, flow: Flow | None = None) -> dict[str, str]:
    """Each experiment's control variant: the first of the flow's experiments and
    of the settings' experiments file (if any)."""
    controls = {e.name: e.variants[0].name for e in (flow.experiments if flow else ())
                if e.variants}
    if not settings.experiments:
        return controls
    try:
        experiments = Experiments.from_file(settings.experiments, settings).experiments
    except ConfigError:
        return controls  # the report still compares, against the first variant by name
    return controls | {e.name: e.variants[0].name for e in experiments}


def _variant(experiment: str, name: str, spec: Any, base: Settings) -> Variant:
    where = f"[{experiment}].{name}"
    if not isinstance(spec, dict) or not KEY.fullmatch(name):
        raise ConfigError("experiments", f"{where}: a lower-case variant name and a table")
    spec = dict(spec)
    weight = spec.pop("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError("experiments", f"{where}: weight must be a positive number")
    for key in spec:
        if key not in PER_CALL:
            raise ConfigError("experiments", f"{where}: {key} cannot vary per call "
                              f"(one of: {', '.join(PER_CALL)})")
    changes = {k: coerce_setting(k, v) for k, v in spec.items()}
    if "disclosure_text" in changes and not str(changes["disclosure_text"]).strip():
        raise ConfigError("experiments", f"{where}: the AI disclosure cannot be empty")
    try:
        dataclasses.replace(base, **changes)  # the same checks as the settings themselves
    except ConfigError as exc:
        raise ConfigError("experiments", f"{where}: {exc}") from None
    return Variant(name, float(weight), changes)


# --- comparing the variants' outcomes ------------------------------------------------
Count = Callable[[CallFacts], bool]
# each proportion compared: (the calls it is a share of, the calls that count)
OUTCOMES: dict[str, tuple[Count, Count]] = {
    "containment": (lambda c: True, lambda c: c.outcome == "completed"),
    "escalation_rate": (lambda c: True, lambda c: c.outcome == "handoff"),
    "csat_satisfied": (lambda c: c.csat is not None, lambda c: (c.csat or 0) >= 4),
}


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion (sound at small n and near 0 or 1)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(s1 / n1 - s2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def compare(calls: list[CallFacts], controls: dict[str, str] | None = None,
            alpha: float = 0.05) -> dict[str, Any]:
    """Per experiment (`ab_*` label): each variant's rates with intervals, and each
    variant against the control (the file's first variant, else the first by name)."""
    by_experiment: dict[str, dict[str, list[CallFacts]]] = {}
    for call in calls:
        if not call.outcome:
            continue  # still in progress
        for key, variant in call.labels.items():
            if key.startswith(LABEL_PREFIX):
                groups = by_experiment.setdefault(key.removeprefix(LABEL_PREFIX), {})
                groups.setdefault(variant, []).append(call)
    result: dict[str, Any] = {}
    for name, variants in sorted(by_experiment.items()):
        control = (controls or {}).get(name)
        control = control if control in variants else sorted(variants)[0]
        arms = {v: _arm(cs) for v, cs in sorted(variants.items())}
        each = alpha / max(1, len(arms) - 1)  # Bonferroni: several variants, one false alarm rate
        result[name] = {"control": control, "alpha": alpha, "alpha_per_comparison": each,
                        "variants": arms,
                        "against_control": {v: _versus(arms[control], arms[v], each)
                                            for v in arms if v != control}}
    return result


def _arm(calls: list[CallFacts]) -> dict[str, Any]:
    arm: dict[str, Any] = {"calls": len(calls)}
    for figure, (among, counts) in OUTCOMES.items():
        base = [c for c in calls if among(c)]
        n, hits = len(base), sum(counts(c) for c in base)
        interval = wilson(hits, n)
        arm[figure] = {"count": hits, "n": n, "rate": round(hits / n, 4) if n else None,
                       "ci95": [round(x, 4) for x in interval] if interval else None}
    survey = csat(calls)
    arm["csat"] = {k: _round(survey[f"csat_{k}"]) for k in ("mean", "response_rate", "offered")}
    return arm


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _versus(control: dict[str, Any], other: dict[str, Any], alpha: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for figure in OUTCOMES:
        c, o = control[figure], other[figure]
        p = two_proportion_p(o["count"], o["n"], c["count"], c["n"])
        enough = min(o["n"], c["n"]) >= MIN_ARM
        rates = (o["rate"], c["rate"])
        out[figure] = {
            "difference": None if None in rates else round(rates[0] - rates[1], 4),
            "p_value": None if p is None else round(p, 4),
            "significant": bool(enough and p is not None and p < alpha),
            "enough_calls": enough,
        }
    return out
