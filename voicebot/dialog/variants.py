"""A flow's own A/B tests: variants of prompt texts, edges (a branch) and
question thresholds, applied to the flow a call runs with, and their checks.

Which variant a call gets is decided outside the dialog layer (the ops
layer hashes the call id with the experiment's split); here a choice of
variants only turns into the flow that call hears, so the policy stays the
same state machine over plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from voicebot.dialog.flow import Flow, FlowExperiment, FlowVariant, Node, Problem, locate
from voicebot.types import LABEL_KEY

Checker = Callable[[Flow], list[Problem]]
_MAPS = ("on", "dtmf")
MAX_NAME = 29  # the call's label is ab_<name>, at most 32 characters


def with_variants(flow: Flow, chosen: dict[str, str]) -> Flow:
    """`flow` as a call in these variants (experiment -> variant name) hears it;
    an experiment not chosen, or a name it does not have, keeps the flow as written."""
    nodes, prompts = dict(flow.nodes), {name: dict(texts) for name, texts in flow.prompts.items()}
    for experiment in flow.experiments:
        variant = experiment.variant(chosen.get(experiment.name, ""))
        if variant is None:
            continue
        for name, texts in variant.prompts.items():
            prompts.setdefault(name, {}).update(texts)
        for name, changes in variant.nodes.items():
            if name in nodes:
                nodes[name] = _changed(nodes[name], changes)
    return replace(flow, nodes=nodes, prompts=prompts)


def each_variant(flow: Flow) -> list[tuple[FlowExperiment, FlowVariant, Flow]]:
    """Every variant on its own (the other experiments at their control)."""
    return [(e, v, with_variants(flow, {e.name: v.name})) for e in flow.experiments
            for v in e.variants]


def _changed(node: Node, changes: dict[str, Any]) -> Node:
    fields = {k: v for k, v in changes.items() if k not in (*_MAPS, "confidence")}
    for key in _MAPS:
        if key in changes:
            fields[key] = {**getattr(node, key), **changes[key]}
    if "confidence" in changes:
        fields["ladder"] = replace(node.ladder, **changes["confidence"])
    return replace(node, **fields)


def check_experiments(flow: Flow, base: list[Problem], check: Checker) -> list[Problem]:
    """Names, splits and what each variant touches; then each variant's flow
    through `check` (the graph checks), its new problems placed at the variant's keys."""
    problems: list[Problem] = []

    def problem(where: str, message: str) -> None:
        problems.append(Problem(where, message, locate(flow.text, where), flow.source))

    owner: dict[str, str] = {}  # a changed key -> the experiment that changes it
    known = {(p.where, p.message) for p in base}
    for experiment, variant, varied in each_variant(flow):
        where = f"experiments.{experiment.name}.{variant.name}"
        if not LABEL_KEY.fullmatch(variant.name):
            problem(where, "a variant's name is a lower-case identifier")
        _check_targets(flow, variant, where, problem)
        for path in variant.paths():
            other = owner.setdefault(path, experiment.name)
            if other != experiment.name:
                problem(f"{where}.{path}", f"experiment {other!r} changes this too: "
                        "a call in both could not tell which one it measured")
        for found in check(varied):
            if (found.where, found.message) not in known:
                path = _cause(variant, found.where)
                problem(f"{where}.{path}" if path else where,
                        f"in variant {variant.name}: {found.where}: {found.message}")
    for experiment in flow.experiments:
        where = f"experiments.{experiment.name}"
        if not LABEL_KEY.fullmatch(experiment.name) or len(experiment.name) > MAX_NAME:
            problem(where, f"an experiment's name is a lower-case identifier of at most "
                    f"{MAX_NAME} characters")
        if len(experiment.variants) < 2:
            problem(where, "an experiment needs two or more variants (the first is the control)")
    return problems


def _check_targets(flow: Flow, variant: FlowVariant, where: str, problem) -> None:  # type: ignore[no-untyped-def]
    for name, texts in variant.prompts.items():
        for code, text in texts.items():
            if not text.strip():
                problem(f"{where}.prompts.{name}.{code}", "a prompt cannot be empty")
    for name, changes in variant.nodes.items():
        node = flow.nodes.get(name)
        if node is None:
            problem(f"{where}.nodes.{name}", f"no node named {name!r}")
        elif "confidence" in changes and node.type != "ask":
            problem(f"{where}.nodes.{name}.confidence", "thresholds belong to ask nodes")


def _cause(variant: FlowVariant, where: str) -> str:
    """The variant's key behind a problem found at `where` in its flow ("" if none is)."""
    related = [p for p in variant.paths() if where.startswith(p) or p.startswith(where + ".")
               or p == where]
    return max(related, key=len, default="")
