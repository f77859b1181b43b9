"""What the caller wanted, in a form an agent can read at a glance.

Pure functions over a stored call record: the intent (from the recognised
utterances), entities worth typing into another system (order numbers,
e-mail addresses, keyed digits) and what the bot already tried.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from voicebot.dialog import lang
from voicebot.handoff.context import INTENT_TEXT, REASON_TEXT

_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_ORDER = re.compile(r"(?<![\w@])#?(\d(?:[\s-]?\d){3,15})(?![\w@])")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_TRIED = {
    "order_status": "gave the order-status self-service answer",
    "password_reset": "gave the password-reset self-service answer",
    "didnt_catch": "asked the caller to repeat",
    "no_input": "prompted after silence",
    "unresolved": "said what it can help with",
    "menu": "offered the menu",
}


@dataclass(frozen=True)
class Entity:
    kind: str  # order_number | email | keyed_digits
    value: str
    utterance: int  # index in the transcript


@dataclass(frozen=True)
class CallSummary:
    intent: str  # order_status | password_reset | human | unknown
    intent_text: str
    reason: str
    reason_text: str
    entities: tuple[Entity, ...] = ()
    bot_tried: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise_call(utterances: list[dict[str, Any]], prompts: list[dict[str, Any]],
                   reason: str) -> CallSummary:
    intent = main_intent(utterances)
    reason_text = REASON_TEXT.get(reason, "")  # type: ignore[call-overload]  # StrEnum keys
    return CallSummary(
        intent=intent, intent_text=INTENT_TEXT.get(intent, intent.replace("_", " ") if intent != "unknown"
                                                   else "not recognised"), reason=reason,
        reason_text=reason_text, entities=tuple(find_entities(utterances)),
        bot_tried=tuple(bot_tried(prompts)))


def main_intent(utterances: list[dict[str, Any]]) -> str:
    """The latest routine request; a plain request for a person only if there is none."""
    intents = [u.get("intent") for u in utterances if u.get("intent")]
    routine = [i for i in intents if i not in (lang.HUMAN, lang.YES, lang.NO, lang.GOODBYE)]
    if routine:
        return str(routine[-1])
    return lang.HUMAN if lang.HUMAN in intents else "unknown"


def find_entities(utterances: list[dict[str, Any]]) -> list[Entity]:
    found: list[Entity] = []
    keyed = ""
    for i, u in enumerate(utterances):
        if u.get("source") == "dtmf":
            keyed += u.get("text", "") if u.get("text") != "0" or keyed else ""
            continue
        text = spoken_digits(u.get("text", ""))
        found += [Entity("email", m.group(0), i) for m in _EMAIL.finditer(text)]
        found += [Entity("order_number", re.sub(r"[\s-]", "", m.group(1)), i)
                  for m in _ORDER.finditer(_EMAIL.sub(" ", text))]
    if keyed:
        found.append(Entity("keyed_digits", keyed, len(utterances) - 1))
    return found


def spoken_digits(text: str) -> str:
    """'order one two three four' → 'order 1234' (runs of spoken digits join up)."""
    out: list[str] = []
    for word in text.split():
        digit = _DIGIT_WORDS.get(word.lower())
        if digit is not None and out and out[-1].isdigit():
            out[-1] += digit
        else:
            out.append(digit or word)
    return " ".join(out)


def bot_tried(prompts: list[dict[str, Any]]) -> list[str]:
    counts = Counter(p.get("name", "") for p in prompts if p.get("name") in _TRIED)
    return [_TRIED[name] + (f" ({n}×)" if n > 1 else "") for name, n in counts.items()]
