"""Checks of a flow's graph: every target exists, every node is reachable,
every question says where no-match and no-input go, every prompt exists in
every language, DTMF 0 stays the way to a person. Each variant of the flow's
experiments gets the same checks, its problems placed at the variant's keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from voicebot.dialog.flow import DIGITS, Flow, FlowError, Node, Problem, load_flow, locate
from voicebot.dialog.lang import BUILTIN_INTENTS, GOODBYE, PACKS
from voicebot.dialog.variants import FlowVariant
from voicebot.dialog.varied import each_variant
from voicebot.types import LABEL_KEY, HandoffReason

MAX_EXPERIMENT_NAME = 29  # the call's label is ab_<name>, at most 32 characters
Report = Callable[[str, str], None]  # problem(where, message)

_DEFAULT_PROMPT = {"end": "goodbye", "transfer": "handoff"}
_FIELD = re.compile(r"{(\w+)}")


def check_flow(flow: Flow) -> list[Problem]:
    """Every problem of the flow and of each of its experiments' variants."""
    problems = _check_graph(flow)
    for name in _unreachable(flow):
        problems.append(Problem(f"nodes.{name}", "unreachable from flow.start",
                                locate(flow.text, f"nodes.{name}"), flow.source))
    return problems + _check_experiments(flow, problems)


def _check_graph(flow: Flow) -> list[Problem]:
    """Everything but reachability (which may differ between variants)."""
    problems: list[Problem] = []

    def problem(where: str, message: str) -> None:
        problems.append(Problem(where, message, locate(flow.text, where), flow.source))

    if flow.start not in flow.nodes:
        problem("flow.start", f"no node named {flow.start!r}")
    for node in flow.nodes.values():
        _check_node(flow, node, problem)
    for name, texts in flow.prompts.items():
        for code in flow.languages:
            if code not in texts and name not in PACKS[code].prompts:
                problem(f"prompts.{name}", f"no {code!r} text")
    for code, text in flow.prompts.get("opt_out_key", {}).items():
        if "{key}" not in text:  # the disclosure must name the key that opts out
            problem(f"prompts.opt_out_key.{code}", "must name the key as {key}")
    for name, intent in flow.intents.items():
        for code in flow.languages:
            if not intent.examples.get(code) and not intent.keywords.get(code):
                problem(f"intents.{name}", f"no {code!r} examples or keywords")
    return problems


def load_checked(path: str | Path) -> Flow:
    """load_flow + check_flow; FlowError with every problem."""
    flow = load_flow(path)
    problems = check_flow(flow)
    if problems:
        raise FlowError(problems)
    return flow


def _check_node(flow: Flow, node: Node, problem: Report) -> None:
    where = f"nodes.{node.name}"
    _check_silences(node, where, problem)
    _check_edges(flow, node, where, problem)
    _check_dtmf(flow, node, problem)
    _check_prompt(flow, node, problem)
    if node.queue and node.queue not in flow.queues:
        problem(f"{where}.queue", f"no queue named {node.queue!r} under [queues]")
    _check_type(flow, node, where, problem)
    accept = node.ladder.accept if node.ladder.accept is not None else node.ladder.confirm
    if not 0 <= node.ladder.confirm <= accept <= 1 or not 0 <= node.ladder.transfer <= 1:
        problem(f"{where}.confidence", "needs 0 <= confirm <= accept <= 1 and 0 <= transfer <= 1")


def _check_edges(flow: Flow, node: Node, where: str, problem: Report) -> None:
    """Every edge leads to a node; every intent under 'on' is one the flow knows."""
    known_intents = set(flow.intents) | set(BUILTIN_INTENTS) | {GOODBYE}
    for key, target in (("next", node.next), ("no_match", node.no_match),
                        ("no_input", node.no_input), ("error", node.error)):
        if target and target not in flow.nodes:
            problem(f"{where}.{key}", f"no node named {target!r}")
    for intent, target in node.on.items():
        if intent not in known_intents:
            problem(f"{where}.on.{intent}", f"no intent named {intent!r}")
        if target not in flow.nodes:
            problem(f"{where}.on.{intent}", f"no node named {target!r}")


def _check_type(flow: Flow, node: Node, where: str, problem: Report) -> None:
    """What each kind of node needs: an ask its edges and something to listen for, a
    say its next node, a transfer a known reason, a lookup a URL and known slots."""
    if node.type == "ask":
        _check_ask(flow, node, where, problem)
    elif node.type in ("say", "answer", "lookup", "language") and not node.next:
        problem(where, f"a {node.type} node needs a next node")
    if node.type == "transfer" and node.reason not in set(HandoffReason):
        problem(f"{where}.reason", f"not a handoff reason: {node.reason!r}")
    if node.type == "lookup":
        if not node.url.startswith(("http://", "https://")):
            problem(f"{where}.url", "a lookup needs an http(s) url")
        for slot in node.send:
            if slot not in flow.slots:
                problem(f"{where}.send", f"no slot named {slot!r}")


def _check_ask(flow: Flow, node: Node, where: str, problem: Report) -> None:
    for key in ("no_match", "no_input"):
        if not getattr(node, key):
            problem(where, f"an ask needs a {key} edge")
    if not node.on and not node.slot and not node.dtmf:
        problem(where, "an ask needs intents under 'on', a slot or a DTMF map")
    if node.slot and node.slot not in flow.slots:
        problem(f"{where}.slot", f"no slot named {node.slot!r} under [slots]")
    if node.slot and not node.next:
        problem(where, "an ask that collects a slot needs a next node")


def _check_dtmf(flow: Flow, node: Node, problem: Report) -> None:
    where = f"nodes.{node.name}.dtmf"
    for key, target in node.dtmf.items():
        if key not in DIGITS:
            problem(f"{where}.{key}", "keys are single digits, * or #")
        elif key == "0":
            problem(f"{where}.0", "0 always reaches a person and cannot be remapped")
        elif node.type == "language":
            if target not in flow.languages:
                problem(f"{where}.{key}", f"{target!r} is not one of the flow's languages")
        elif target not in flow.nodes and target not in node.on:
            problem(f"{where}.{key}", f"{target!r} is neither a node nor an intent under 'on'")


def _check_prompt(flow: Flow, node: Node, problem: Report) -> None:
    name = node.prompt or _DEFAULT_PROMPT.get(node.type, "")
    if not name:
        if node.type in ("ask", "say", "answer", "lookup", "language"):
            problem(f"nodes.{node.name}", f"a {node.type} node needs a prompt")
        return
    for code in flow.languages:
        try:
            text = flow.prompt(name, code)
        except KeyError:
            problem(f"nodes.{node.name}.prompt", f"prompt {name!r} has no {code!r} text")
            continue
        if node.type != "lookup":
            for f in _FIELD.findall(text):
                if f not in flow.slots:
                    problem(f"prompts.{name}", f"{{{f}}} is not a slot (only lookups fill other fields)")


def _check_silences(node: Node, where: str, problem) -> None:  # type: ignore[no-untyped-def]
    """A question's end-of-turn silences, where it gives them, in order:
    complete_ms (a whole phrase) <= hangover_ms <= mid_phrase_ms."""
    given = [(k, v) for k, v in (("complete_ms", node.complete_ms), ("hangover_ms", node.hangover_ms),
                                 ("mid_phrase_ms", node.mid_phrase_ms)) if v]
    if given and node.type not in ("ask", "language"):
        problem(f"{where}.{given[0][0]}", "only a question (ask, language) listens for the caller")
    for (short, a), (long, b) in zip(given, given[1:], strict=False):
        if a > b:
            problem(f"{where}.{short}", f"{short} ({a}) must not exceed {long} ({b})")


def _unreachable(flow: Flow) -> list[str]:
    """Nodes no variant of the flow reaches (a node only a variant's branch leads to is in use)."""
    seen: set[str] = set()
    for each in [flow, *(varied for _, _, varied in each_variant(flow))]:
        seen |= _reachable(each)
    return [n for n in flow.nodes if n not in seen]


def _reachable(flow: Flow) -> set[str]:
    seen, todo = set(), [flow.start]
    while todo:
        name = todo.pop()
        if name in seen or name not in flow.nodes:
            continue
        seen.add(name)
        node = flow.nodes[name]
        todo += [node.next, node.no_match, node.no_input, node.error, *node.on.values()]
        if node.type != "language":
            todo += list(node.dtmf.values())
    return seen


# --- a flow's experiments ------------------------------------------------------------
def _check_experiments(flow: Flow, base: list[Problem]) -> list[Problem]:
    """Names, splits and what each variant touches; then each variant's flow
    through the graph checks, the problems the flow itself has not placed at the variant's keys."""
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
        for found in _check_graph(varied):
            if (found.where, found.message) not in known:
                path = _cause(variant, found.where)
                problem(f"{where}.{path}" if path else where,
                        f"in variant {variant.name}: {found.where}: {found.message}")
    for experiment in flow.experiments:
        where = f"experiments.{experiment.name}"
        if not LABEL_KEY.fullmatch(experiment.name) or len(experiment.name) > MAX_EXPERIMENT_NAME:
            problem(where, f"an experiment's name is a lower-case identifier of at most "
                    f"{MAX_EXPERIMENT_NAME} characters")
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
