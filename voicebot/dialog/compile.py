"""A flow's phrases as each language's recogniser vocabulary (plain data).

Contexts: "open" for questions with intents (every intent's examples and key
words, the requests for a person, yes and no), "yesno" for confirmations,
"digits" for questions that collect a number. A request for a person is in
every context: the caller can ask for one at any question.
"""

from __future__ import annotations

from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.lang import PACKS
from voicebot.phrases import tidy
from voicebot.types import ListenContext, Vocabulary

OPEN, YESNO, DIGITS = "open", "yesno", "digits"


def vocabulary(flow: Flow, language: str) -> Vocabulary:
    pack = PACKS[language]
    person = [tidy(p) for p in pack.person_examples]
    yes_no = [tidy(p) for p in pack.yes + pack.no]
    yes = [tidy(p) for p in pack.yes[:pack.open_yes]]  # enough to answer "anything else?"
    examples = [e for intent in flow.intents.values() for e in intent.examples.get(language, ())]
    contexts = (
        ListenContext(OPEN, _unique(examples + person + yes)),
        ListenContext(YESNO, _unique(yes_no + person)),
        ListenContext(DIGITS, _unique([_digits_template(pack.digits)] + yes_no + person)),
    )
    return Vocabulary(language, contexts)


def context_for(node: Node, confirming: bool) -> str:
    if confirming:
        return YESNO
    return DIGITS if node.slot else OPEN


def _digits_template(words: dict[str, str], longest: int = 12) -> str:
    """Any run of digit words, up to `longest`."""
    one = "(" + " | ".join(words) + ")"
    return " ".join([one] + [f"[{one}]"] * (longest - 1))


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def default_vocabulary(language: str) -> Vocabulary:
    """The packaged default flow's vocabulary (tools, benchmarks and tests)."""
    from voicebot.dialog.flow import DEFAULT_FLOW
    from voicebot.dialog.flowcheck import load_checked

    return vocabulary(load_checked(DEFAULT_FLOW), language)
