"""A flow's own A/B tests: variants of prompt texts, edges (a branch) and
question thresholds: read from the flow file, and applied to the flow a call
runs with (voicebot.dialog.varied; voicebot.dialog.flowcheck checks them).

Which variant a call gets is decided outside the dialog layer (the ops
layer hashes the call id with the experiment's split); here a choice of
variants only turns into the flow that call hears, so the policy stays the
same state machine over plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# what a flow variant may change at a node: its edges (a branch), its prompt, its ladder
VARIANT_NODE_KEYS = ("next", "no_match", "no_input", "error", "prompt", "on", "dtmf", "confidence")
_RUNGS = ("accept", "confirm", "transfer")


@dataclass(frozen=True)
class FlowVariant:
    """One variant of an experiment: prompt texts (name -> language -> text) and node
    changes (node -> {edge, prompt or "confidence": {rung: value}}) over the flow."""

    name: str
    weight: float = 1.0
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def paths(self) -> list[str]:
        """Every key this variant sets, as a dotted path of the flow file."""
        out = [f"prompts.{n}.{code}" for n, texts in self.prompts.items() for code in texts]
        for node, changes in self.nodes.items():
            for key, value in changes.items():
                if isinstance(value, dict):
                    out += [f"nodes.{node}.{key}.{sub}" for sub in value]
                else:
                    out.append(f"nodes.{node}.{key}")
        return out


@dataclass(frozen=True)
class FlowExperiment:
    """An A/B test the flow declares; its first variant is the control."""

    name: str
    variants: tuple[FlowVariant, ...]

    def variant(self, name: str) -> FlowVariant | None:
        return next((v for v in self.variants if v.name == name), None)


class Reader(Protocol):
    """The flow file's reader: collects problems at dotted key paths."""

    def problem(self, where: str, message: str) -> None: ...
    def table(self, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]: ...
    def prompt(self, name: str, spec: Any, where: str = "") -> dict[str, str]: ...


def read_experiments(r: Reader, tables: dict[str, Any]) -> tuple[FlowExperiment, ...]:
    return tuple(read_experiment(r, name, spec) for name, spec in tables.items())


def read_experiment(r: Reader, name: str, spec: Any) -> FlowExperiment:
    if not isinstance(spec, dict):
        r.problem(f"experiments.{name}", "must be a table of variants")
        return FlowExperiment(name, ())
    return FlowExperiment(name, tuple(_variant(r, f"experiments.{name}.{v}", v, s)
                                      for v, s in spec.items()))


def _variant(r: Reader, where: str, name: str, spec: Any) -> FlowVariant:
    if not isinstance(spec, dict):
        r.problem(where, "must be a table (weight, prompts, nodes)")
        return FlowVariant(name)
    for key in spec.keys() - {"weight", "prompts", "nodes"}:
        r.problem(f"{where}.{key}", "unknown key (expected weight, prompts or nodes)")
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        r.problem(f"{where}.weight", "must be a positive number")
        weight = 1
    prompts = {n: r.prompt(n, s, f"{where}.prompts.{n}")
               for n, s in r.table(spec, "prompts", where).items()}
    nodes = {n: _node_changes(r, f"{where}.nodes.{n}", s)
             for n, s in r.table(spec, "nodes", where).items()}
    return FlowVariant(name, float(weight), prompts, nodes)


def _node_changes(r: Reader, where: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        r.problem(where, "must be a table of the node's keys to change")
        return {}
    changes: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in VARIANT_NODE_KEYS:
            r.problem(f"{where}.{key}", "a variant changes only a node's "
                      f"{', '.join(VARIANT_NODE_KEYS)}")
        elif key == "confidence":
            changes[key] = _rungs(r, f"{where}.{key}", value)
        elif key in ("on", "dtmf"):
            if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                changes[key] = {str(k): v for k, v in value.items()}
            else:
                r.problem(f"{where}.{key}", 'must be a table of name = "target"')
        elif isinstance(value, str):
            changes[key] = value
        else:
            r.problem(f"{where}.{key}", "must be a string")
    return changes


def _rungs(r: Reader, where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        r.problem(where, "must be a table of accept, confirm, transfer")
        return {}
    rungs = {}
    for rung, number in value.items():
        if rung not in _RUNGS or isinstance(number, bool) or not isinstance(number, int | float):
            r.problem(f"{where}.{rung}", "expected accept, confirm or transfer = a number")
        else:
            rungs[rung] = float(number)
    return rungs
