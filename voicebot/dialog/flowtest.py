"""`voicebot flows test FLOW CASES`: text cases through the real policy, offline.

CASES is TOML, one `[[cases]]` table each:

    [[cases]]
    say = "could you put me through to somebody"   # what the caller says
    expect = "handoff:caller_request"              # or "intent:order_status", "node:goodbye", "confirm"
    at = "menu"                                    # the question it answers (default: the first)
    language = "en"                                # default: the flow's first
    variants = { menu_wording = "short" }          # variants of the flow's experiments (default: as written)

Each utterance is heard with full confidence, so a case tests the flow and the
text matcher, not a recogniser.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.dialog import policy as p
from voicebot.dialog.flow import Flow
from voicebot.dialog.lang import BUILTIN_INTENTS
from voicebot.dialog.varied import with_variants
from voicebot.types import HandoffReason, Utterance

REPROMPTS = ("didnt_catch", "slot_invalid")
EXPECT_FORMS = "confirm, node:NODE, intent:INTENT, handoff:REASON or reprompt:didnt_catch|slot_invalid"


@dataclass(frozen=True)
class CaseResult:
    say: str
    at: str
    expect: str
    got: str

    @property
    def passed(self) -> bool:
        return self.got == self.expect


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    """The cases of a TOML file; ValueError naming the file and what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    cases: Any = data.get("cases", [])
    if not isinstance(cases, list):
        raise ValueError(f"{path}: cases is a list of [[cases]] tables")
    for i, case in enumerate(cases):  # every entry a table with say and expect
        if not (isinstance(case, dict) and isinstance(case.get("say"), str)
                and isinstance(case.get("expect"), str)):
            raise ValueError(f"{path}: cases[{i}] needs say = \"...\" and expect = \"...\"")
        variants: Any = case.get("variants", {})
        if not isinstance(variants, dict) or not all(isinstance(v, str) for v in variants.values()):
            raise ValueError(f"{path}: cases[{i}].variants is a table of experiment = \"variant\"")
    return cases


def case_problem(flow: Flow, case: dict[str, Any]) -> str | None:
    """What in a case names something the flow does not have, or asks for an outcome
    no case can have (so it would only ever fail); None if nothing."""
    at, language = case.get("at") or first_question(flow), case.get("language") or flow.languages[0]
    if getattr(flow.nodes.get(at), "type", "") != "ask":
        questions = ", ".join(n.name for n in flow.nodes.values() if n.type == "ask")
        return f"at = {at!r}: the flow has no question named so (its questions: {questions})"
    if language not in flow.languages:
        return f"language = {language!r}: the flow speaks {', '.join(flow.languages)}"
    kind, _, name = case["expect"].partition(":")
    names = {"node": set(flow.nodes), "intent": {*flow.intents, *BUILTIN_INTENTS, "None"},
             "handoff": {r.value for r in HandoffReason}, "reprompt": set(REPROMPTS)}
    if case["expect"] != "confirm" and name not in names.get(kind, ()):
        return f"expect = {case['expect']!r}: not an outcome of this flow; write {EXPECT_FORMS}"
    return None


def first_question(flow: Flow) -> str:
    """Where a case without `at` is heard: the start node, or the first question after
    it when the flow opens by saying something."""
    name, seen = flow.start, set()
    while name in flow.nodes and flow.nodes[name].type != "ask" and name not in seen:
        seen.add(name)
        name = flow.nodes[name].next
    return name if name in flow.nodes else flow.start


def run_case(flow: Flow, case: dict[str, Any]) -> CaseResult:
    flow = _varied(flow, case.get("variants", {}))
    language = case.get("language") or flow.languages[0]
    at = case.get("at") or first_question(flow)
    policy = p.Policy(flow, language)
    policy.start()
    policy.node, policy.state = at, p.State.LISTENING
    text = case["say"]
    intent = policy.understand(text).intent
    if case["expect"].startswith("intent:"):
        return CaseResult(text, at, case["expect"], f"intent:{intent}")
    actions = policy.step(p.Heard(Utterance(text, 1.0, 0.0, 1.0, intent=intent)))
    return CaseResult(text, at, case["expect"], _outcome(policy, actions, intent))


def _outcome(policy: p.Policy, actions: list[p.Action], intent: str | None) -> str:
    says = [a.name for a in actions if isinstance(a, p.Say)]
    if "handoff" in says and policy.handoff_reason is not None:
        return f"handoff:{policy.handoff_reason}"
    if "confirm_human" in says:
        return "confirm"
    if says and says[-1] in REPROMPTS:
        return f"reprompt:{says[-1]}"
    return f"node:{policy.node}" if says or actions else f"intent:{intent}"


def _varied(flow: Flow, variants: dict[str, str]) -> Flow:
    """ValueError for an experiment or variant the flow does not have."""
    for name, variant in variants.items():
        experiment = next((e for e in flow.experiments if e.name == name), None)
        if experiment is None or experiment.variant(variant) is None:
            raise ValueError(f"the flow has no experiment {name!r} with a variant {variant!r}")
    return with_variants(flow, variants)


def run_cases(flow: Flow, cases: list[dict[str, Any]]) -> list[CaseResult]:
    """ValueError naming the first case that cannot be run as written, before any runs."""
    for i, case in enumerate(cases):
        problem = case_problem(flow, case)
        if problem is not None:
            raise ValueError(f"cases[{i}]: {problem}")
    return [run_case(flow, case) for case in cases]
