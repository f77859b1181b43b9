"""A flow file: what a deployment's bot says, understands and does, as data.

TOML (see `voicebot/flows/default.toml` and docs/flows.md). `load_flow` reads
and type-checks it; `voicebot.dialog.flowcheck` checks the graph. Every
problem names its place in the file (`file:line: key.path: message`).
The disclosure and the way to a person are not part of the flow: the policy
adds them to every call and every question.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.dialog.lang import PACKS
from voicebot.dialog.variants import FlowExperiment, read_experiments
from voicebot.phrases import TemplateError, parse, tidy
from voicebot.types import normalise

NODE_TYPES = ("ask", "say", "answer", "lookup", "transfer", "end", "language")
DIGITS = tuple("0123456789*#")
DEFAULT_FLOW = Path(__file__).resolve().parent.parent / "flows" / "default.toml"


@dataclass(frozen=True)
class Problem:
    where: str  # dotted key path inside the file
    message: str
    line: int | None = None
    file: str = ""

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place}: {self.where}: {self.message}" if place else f"{self.where}: {self.message}"


class FlowError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Ladder:
    """Confidence thresholds of one question. A clear request for a person at or
    above `transfer` is put through at once; a request for a person at or above
    `confirm` (or an unclear one) gets one "Do you want me to connect you to a
    person?"; anything else at or above `accept` is acted on; below, the turn
    counts as not understood (reprompt, then a person).

    `transfer` sits high on purpose: a grammar recogniser forces other speech
    into its nearest phrase, and measured on our dev recordings out-of-domain
    sentences reached 0.93 as requests for a person; a needless question costs
    a caller two seconds, a needless transfer costs a person's time."""

    accept: float | None = None  # None: VOICEBOT_CONFIDENCE_THRESHOLD
    confirm: float = 0.2
    transfer: float = 0.95


@dataclass(frozen=True)
class Slot:
    name: str
    min_digits: int = 1
    max_digits: int = 12
    pattern: str = ""  # a regular expression the digits must match in full
    confirm: bool = True  # read the value back for a yes/no

    def valid(self, digits: str) -> bool:
        if not digits.isdigit() or not self.min_digits <= len(digits) <= self.max_digits:
            return False
        return not self.pattern or re.fullmatch(self.pattern, digits) is not None


@dataclass(frozen=True)
class Intent:
    name: str
    label: str  # what the human reads: "order status"
    examples: dict[str, tuple[str, ...]]  # language -> phrase templates (voicebot.phrases)
    keywords: dict[str, tuple[str, ...]]  # language -> words that identify it alone


@dataclass(frozen=True)
class Node:
    name: str
    type: str
    prompt: str = ""
    next: str = ""
    on: dict[str, str] = field(default_factory=dict)  # intent -> node
    dtmf: dict[str, str] = field(default_factory=dict)  # key -> intent or node (language: code)
    no_match: str = ""
    no_input: str = ""
    queue: str = ""  # where "wants a person" goes from here; a transfer node's queue
    reason: str = "routed"  # a transfer node's handoff reason
    intent: str = ""  # an answer node: the intent it answers
    slot: str = ""  # an ask node that collects this slot
    url: str = ""  # a lookup node: the backend
    send: tuple[str, ...] = ()  # a lookup node: slots sent
    timeout_s: float = 3.0
    error: str = ""  # a lookup node: where a failure goes ("" = a person)
    hangover_ms: int | None = None  # silence that ends the caller's turn at this question
    complete_ms: int | None = None  # ...after a whole phrase it expects (0 = always hangover_ms)
    mid_phrase_ms: int | None = None  # ...in the middle of a phrase
    ladder: Ladder = Ladder()


@dataclass(frozen=True)
class Flow:
    name: str
    languages: tuple[str, ...]
    start: str
    nodes: dict[str, Node]
    intents: dict[str, Intent]
    prompts: dict[str, dict[str, str]]  # prompt name -> language -> text
    queues: dict[str, str]  # queue name -> phone number or SIP URI ("" = VOICEBOT_HUMAN_LINE)
    slots: dict[str, Slot]
    source: str = ""
    text: str = ""  # the file as read, for locating problems
    csat_survey: bool = False  # ask "rate this call 1-5" before an end node's goodbye
    csat_timeout_s: float = 5.0  # no key this long: the survey is skipped
    experiments: tuple[FlowExperiment, ...] = ()

    def prompt(self, name: str, language: str) -> str:
        """The flow's text for a prompt, else the built-in one; KeyError if neither."""
        own = self.prompts.get(name, {}).get(language)
        return own if own is not None else PACKS[language].prompts[name]

    def disclosure(self, language: str, opt_out_key: str = "") -> str:
        """The AI disclosure; with an opt-out key, the sentence naming it follows."""
        text = self.prompt("disclosure", language)
        if opt_out_key:
            text += " " + self.prompt("opt_out_key", language).format(key=opt_out_key)
        return text

    def voice(self, language: str) -> str:
        return PACKS[language].voice


_TOP = {"flow", "prompts", "intents", "nodes", "queues", "slots", "experiments"}
_NODE_KEYS = {"type", "prompt", "next", "on", "dtmf", "no_match", "no_input", "queue", "reason",
              "intent", "slot", "url", "send", "timeout_s", "error", "hangover_ms", "complete_ms",
              "mid_phrase_ms", "confidence"}


def load_flow(path: str | Path) -> Flow:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError([Problem("(file)", f"cannot read: {exc.strerror or exc}", file=str(path))]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise FlowError([Problem("(syntax)", str(exc), line, str(path))]) from None
    reader = _Reader(str(path), text)
    flow = reader.flow(data)
    if reader.problems:
        raise FlowError(reader.problems)
    return flow


class _Reader:
    """Type-checks the parsed TOML into a Flow, collecting every problem."""

    def __init__(self, file: str, text: str) -> None:
        self.file, self.text = file, text
        self.problems: list[Problem] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message, locate(self.text, where), self.file))

    def flow(self, data: dict[str, Any]) -> Flow:
        for key in data.keys() - _TOP:
            self.problem(key, f"unknown section (expected one of {', '.join(sorted(_TOP))})")
        head = self.table(data, "flow")
        languages = tuple(self.strings(head, "flow.languages", head.get("languages", [])))
        for code in languages:
            if code not in PACKS:
                self.problem("flow.languages", f"unsupported language {code!r} (have {', '.join(PACKS)})")
        if not languages:
            self.problem("flow.languages", "list at least one language")
        nodes = {name: self.node(name, spec) for name, spec in self.table(data, "nodes").items()}
        return Flow(
            name=str(head.get("name", Path(self.file).stem)), languages=languages,
            start=str(head.get("start", "")), nodes=nodes,
            intents={n: self.intent(n, spec, languages) for n, spec in self.table(data, "intents").items()},
            prompts={n: self.prompt(n, spec) for n, spec in self.table(data, "prompts").items()},
            queues={n: str(v) for n, v in self.table(data, "queues").items()},
            slots={n: self.slot(n, spec) for n, spec in self.table(data, "slots").items()},
            source=self.file, text=self.text, **self.survey(head),
            experiments=read_experiments(self, self.table(data, "experiments")))

    def table(self, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(f"{where}.{key}" if where else key, "must be a table")
            return {}
        return value

    def survey(self, head: dict[str, Any]) -> dict[str, Any]:
        on, timeout = head.get("csat_survey", False), head.get("csat_timeout_s", 5.0)
        if not isinstance(on, bool):
            self.problem("flow.csat_survey", "must be true or false")
            on = False
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 30:
            self.problem("flow.csat_timeout_s", "must be a number of seconds from 1 to 30")
            timeout = 5.0
        return {"csat_survey": on, "csat_timeout_s": float(timeout)}

    def strings(self, parent: dict[str, Any], where: str, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(where, "must be a list of strings")
            return []
        return list(value)

    def prompt(self, name: str, spec: Any, where: str = "") -> dict[str, str]:
        if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
            self.problem(where or f"prompts.{name}", 'must be a table of language = "text"')
            return {}
        return dict(spec)

    def intent(self, name: str, spec: Any, languages: tuple[str, ...]) -> Intent:
        where = f"intents.{name}"
        if not isinstance(spec, dict):
            self.problem(where, "must be a table")
            return Intent(name, name, {}, {})
        examples: dict[str, tuple[str, ...]] = {}
        keywords: dict[str, tuple[str, ...]] = {}
        for key, value in spec.items():
            if key == "label":
                continue
            if key == "keywords" and isinstance(value, dict):
                for code, words in value.items():
                    keywords[code] = tuple(normalise(w) for w in self.strings(spec, f"{where}.keywords.{code}", words))
            elif key in PACKS:
                examples[key] = tuple(tidy(e) for e in self.strings(spec, f"{where}.{key}", value))
                for template in examples[key]:
                    try:
                        parse(template)
                    except TemplateError as exc:
                        self.problem(f"{where}.{key}", str(exc))
            else:
                self.problem(f"{where}.{key}", "expected a language code, 'keywords' or 'label'")
        return Intent(name, str(spec.get("label", name.replace("_", " "))), examples, keywords)

    def slot(self, name: str, spec: Any) -> Slot:
        where = f"slots.{name}"
        if not isinstance(spec, dict):
            self.problem(where, "must be a table")
            return Slot(name)
        slot = Slot(name, int(spec.get("min_digits", 1)), int(spec.get("max_digits", 12)),
                    str(spec.get("pattern", "")), bool(spec.get("confirm", True)))
        if slot.pattern:
            try:
                re.compile(slot.pattern)
            except re.error as exc:
                self.problem(f"{where}.pattern", f"not a regular expression: {exc}")
        if not 1 <= slot.min_digits <= slot.max_digits <= 32:
            self.problem(where, "needs 1 <= min_digits <= max_digits <= 32")
        return slot

    def silence(self, where: str, value: Any) -> int | None:
        """An end-of-turn silence in ms (0 only for complete_ms: off)."""
        if value is None:
            return None
        low = 0 if where.endswith("complete_ms") else 100
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 5000:
            self.problem(where, f"must be a whole number of milliseconds from {low} to 5000")
            return None
        return value

    def node(self, name: str, spec: Any) -> Node:
        where = f"nodes.{name}"
        if not isinstance(spec, dict):
            self.problem(where, "must be a table")
            return Node(name, "say")
        for key in spec.keys() - _NODE_KEYS:
            self.problem(f"{where}.{key}", f"unknown key (expected one of {', '.join(sorted(_NODE_KEYS))})")
        kind = spec.get("type", "")
        if kind not in NODE_TYPES:
            self.problem(f"{where}.type", f"must be one of {', '.join(NODE_TYPES)}, got {kind!r}")
        maps = {}
        for key in ("on", "dtmf"):
            value = spec.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                self.problem(f"{where}.{key}", 'must be a table of name = "target"')
                value = {}
            maps[key] = {str(k): v for k, v in value.items()}
        ladder = spec.get("confidence", {})
        if not isinstance(ladder, dict):
            self.problem(f"{where}.confidence", "must be a table with accept and confirm")
            ladder = {}
        turn = {key: self.silence(f"{where}.{key}", spec.get(key))
                for key in ("hangover_ms", "complete_ms", "mid_phrase_ms")}
        return Node(
            name=name, type=str(kind), prompt=str(spec.get("prompt", "")), next=str(spec.get("next", "")),
            on=maps["on"], dtmf=maps["dtmf"], no_match=str(spec.get("no_match", "")),
            no_input=str(spec.get("no_input", "")), queue=str(spec.get("queue", "")),
            reason=str(spec.get("reason", "routed")), intent=str(spec.get("intent", "")),
            slot=str(spec.get("slot", "")), url=str(spec.get("url", "")),
            send=tuple(self.strings(spec, f"{where}.send", spec.get("send", []))),
            timeout_s=float(spec.get("timeout_s", 3.0)), error=str(spec.get("error", "")),
            **turn,
            ladder=Ladder(float(ladder["accept"]) if "accept" in ladder else None,
                          float(ladder.get("confirm", 0.2)), float(ladder.get("transfer", 0.95))))


def locate(text: str, where: str) -> int | None:
    """Line of `where` (a dotted key path) in the TOML text: the deepest table
    header that is a prefix of it, then the first key line under it."""
    parts = where.split(".")
    lines = text.splitlines()
    for i, line in enumerate(lines):  # its own header, or the first one under it
        if re.match(rf"\s*\[\s*{re.escape(where)}\s*[.\]]", line):
            return i + 1
    for cut in range(len(parts), 0, -1):
        header = ".".join(parts[:cut])
        for i, line in enumerate(lines):
            if re.fullmatch(rf"\s*\[\s*{re.escape(header)}\s*\]\s*(#.*)?", line):
                rest = parts[cut:]
                if not rest:
                    return i + 1
                return _key_line(lines, i + 1, rest) or i + 1
    return None


def _key_line(lines: list[str], first: int, keys: list[str]) -> int | None:
    """The line under a header that sets the longest dotted prefix of `keys`."""
    for depth in range(len(keys), 0, -1):
        key = r"\s*\.\s*".join(rf'"?{re.escape(k)}"?' for k in keys[:depth])
        for j in range(first, len(lines)):
            if lines[j].lstrip().startswith("["):
                break
            if re.match(rf"\s*{key}\s*[.=]", lines[j]):  # the key, or one under it
                return j + 1
    return None
