"""A flow as a call in chosen variants of its experiments hears it
(voicebot.dialog.variants reads the experiments from the flow file)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.variants import FlowExperiment, FlowVariant

_MAPS = ("on", "dtmf")  # a variant's entries are added to these tables, not put in their place


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
