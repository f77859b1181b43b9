"""Typed placeholders for numbers and addresses callers say, before storage and display.

Works on the recognised words, so spoken forms count the same as digits:
"four one one one one one one one one one one one one one one one" is a card
number just like "4111111111111111". A run of digits (digit words, digit
groups, "oh" between digits) is classified by its length, its checksum and the
words just before it:

| placeholder | rule |
|---|---|
| `[CARD]` | 13–19 digits passing the Luhn check, or after "card" |
| `[SSN]` | 9 digits after "social security"/"ssn", or written 3-2-4 |
| `[ACCOUNT]` | 4+ digits after "account", "routing", "iban", "member", "policy" |
| `[PHONE]` | 7–15 digits after "phone", "call", "cell", "mobile", "number", or starting with "+", or 10–11 digits |
| `[EMAIL]` | `name@host.tld`, or spoken "name at host dot com" |
| `[DIGITS]` | any other run of 5 or more digits |

Digit words, digit groups, "oh" between digits, "double"/"triple" before a
digit, teens ("eleven" = 11) and tens ("forty one" = 41, "forty" alone = 40)
all count, so "forty one eleven eleven ..." is a card number too. Not
understood (known misses, listed in `tests/test_redaction.py`): personal data
that is not a number or an address (names, street addresses), and
"hundred"/"thousand" ("four hundred twelve" is two runs).

**The slot rule.** A run of 4–16 digits right after "order" (optionally
"number", "no", "#" or "is" between) is the order number the flow and the agent
need, so it is kept, unless it is a card number. Digits keyed on the phone
(DTMF) are what the flow asked for and are kept too, unless they are a card
number. It is never in the clear at
rest: every utterance is stored sealed (`voicebot.storage.sealed`).
Shorter runs ("two items", "four days", "room 101") are not personal and stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DIGIT_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
               "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TEEN_WORDS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
              "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}
TENS_WORDS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6",
              "seventy": "7", "eighty": "8", "ninety": "9"}
_ZERO_WORDS = ("oh", "o")
_REPEAT = {"double": 2, "triple": 3}  # digits only between other digits ("oh my" stays)
_GROUP = re.compile(r"^\(?\+?\d[\d\-().]*$")
_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$")
_TLDS = {"com", "net", "org", "edu", "gov", "io", "co", "uk", "de", "kr", "info", "biz"}
_CONTEXT = {
    "CARD": ("card", "visa", "mastercard", "amex", "credit", "debit"),
    "SSN": ("social", "security", "ssn"),
    "ACCOUNT": ("account", "routing", "iban", "member", "policy", "acct"),
    "PHONE": ("phone", "call", "cell", "mobile", "number", "telephone", "reach"),
}
_ORDER_GAP = {"number", "no", "#", "is", "num"}


@dataclass(frozen=True)
class Span:
    start: int  # token index
    end: int  # exclusive
    kind: str  # placeholder name, or "" to keep


def redact(text: str) -> str:
    tokens = text.split()
    return " ".join(_apply(tokens, find_spans(tokens)))


def redact_utterance(item: dict[str, Any]) -> dict[str, Any]:
    """`text` and `words` of a stored utterance; a redacted run of words becomes
    one word with the placeholder, the run's times and its lowest confidence."""
    tokens = str(item.get("text", "")).split()
    spans = [s for s in find_spans(tokens) if s.kind]
    if item.get("source") == "dtmf":  # keys pressed when the flow asked for them: a slot
        spans = [s for s in spans if s.kind == "CARD"]
    if not spans:
        return {}
    out: dict[str, Any] = {"text": " ".join(_apply(tokens, spans))}
    words = item.get("words") or []
    if [w.get("text") for w in words] == tokens:
        out["words"] = _apply_words(words, spans)
    elif words:
        out["words"] = []  # cannot align them safely: drop rather than keep a number
    return out


def find_spans(tokens: list[str]) -> list[Span]:
    spans = [Span(i, i + 1, "EMAIL") for i, t in enumerate(tokens)
             if _EMAIL.match(t.strip(",.;:?!\"'()<>"))]
    spans += _spoken_emails(tokens)
    taken = {i for s in spans for i in range(s.start, s.end)}
    for start, end, digits in _digit_runs(tokens):
        if taken.isdisjoint(range(start, end)):
            spans.append(Span(start, end, _classify(tokens, start, end, digits)))
    return sorted((s for s in spans if s.kind), key=lambda s: s.start)


def _digit_runs(tokens: list[str]) -> list[tuple[int, int, str]]:
    runs, i = [], 0
    while i < len(tokens):
        if _digit_at(tokens, i) is None:
            i += 1
            continue
        j, digits = i, ""
        while j < len(tokens) and (d := _digit_at(tokens, j)) is not None:
            digits += d
            j += 1
        runs.append((i, j, digits))
        i = j
    return runs


def _digit_at(tokens: list[str], i: int) -> str | None:
    """The digits token `i` stands for; "oh" counts as 0 only when a digit follows
    (after any further "oh"s), so "oh my order" is not a number."""
    digits = _digits(tokens[i])
    if digits is not None:
        return digits
    tens = TENS_WORDS.get(_word(tokens[i]))
    if tens is not None:  # "forty one" is 41: the unit word that follows adds its digit
        unit = _word(tokens[i + 1]) if i + 1 < len(tokens) else ""
        return tens if unit in DIGIT_WORDS and unit != "zero" else tens + "0"
    repeat = _REPEAT.get(tokens[i].lower())
    following = _digits(tokens[i + 1]) if repeat and i + 1 < len(tokens) else None
    if repeat and following is not None and len(following) == 1:
        return following * (repeat - 1)  # "double five": the five adds the last
    j = i
    while j < len(tokens) and tokens[j].lower() in _ZERO_WORDS:
        j += 1
    return "0" if j > i and j < len(tokens) and _digits(tokens[j]) is not None else None


def _word(token: str) -> str:
    return token.lower().strip(",.?!;:\"'")


def _digits(token: str) -> str | None:
    word = _word(token)
    if word in DIGIT_WORDS:
        return DIGIT_WORDS[word]
    if word in TEEN_WORDS:
        return TEEN_WORDS[word]
    if _GROUP.match(word):
        return re.sub(r"\D", "", word)
    return None


def _classify(tokens: list[str], start: int, end: int, digits: str) -> str:
    before = [t.lower().strip(",.:?!") for t in tokens[max(0, start - 4):start]]
    written = " ".join(tokens[start:end])
    n = len(digits)
    if 13 <= n <= 19 and (_luhn(digits) or _near(before, "CARD")):
        return "CARD"
    if n == 9 and (_near(before, "SSN") or re.fullmatch(r"\d{3}-\d{2}-\d{4}", written)):
        return "SSN"
    if _is_order(before) and 4 <= n <= 16:
        return ""
    if n >= 4 and _near(before, "ACCOUNT"):
        return "ACCOUNT"
    if 7 <= n <= 15 and (_near(before, "PHONE") or written.startswith("+")) or n in (10, 11):
        return "PHONE"
    return "DIGITS" if n >= 5 else ""


def _near(before: list[str], kind: str) -> bool:
    return any(w in _CONTEXT[kind] for w in before)


def _is_order(before: list[str]) -> bool:
    trimmed = list(before)
    while trimmed and trimmed[-1] in _ORDER_GAP:
        trimmed.pop()
    return bool(trimmed) and trimmed[-1] in ("order", "orders", "order#")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _spoken_emails(tokens: list[str]) -> list[Span]:
    """'jane dot doe at example dot com': one name, 'at', a host ending in 'dot <tld>'."""
    low = [t.lower().strip(",.?!") for t in tokens]
    spans = []
    for i, word in enumerate(low):
        if word != "at" or i == 0:
            continue
        end = i + 1
        while end + 2 < len(low) and low[end + 1] == "dot":
            end += 2
        if end == i + 1 or low[end] not in _TLDS:
            continue
        start = i - 1
        while start >= 2 and low[start - 1] == "dot":
            start -= 2
        while start >= 1 and len(low[start - 1]) == 1 and low[start - 1].isalpha():
            start -= 1  # a spelled name: "j o h n at ..."
        spans.append(Span(start, end + 1, "EMAIL"))
    return spans


def _apply(tokens: list[str], spans: list[Span]) -> list[str]:
    """Punctuation around a span stays: '"my card is 4111…1111".' keeps its '".'."""
    out, i = [], 0
    for s in spans:
        before = re.match(r"[\"'¿¡]*", tokens[s.start]).group(0)  # type: ignore[union-attr]
        after = re.search(r"[\"',.;:?!]*$", tokens[s.end - 1]).group(0)  # type: ignore[union-attr]
        out += tokens[i:s.start] + [f"{before}[{s.kind}]{after}"]
        i = s.end
    return out + tokens[i:]


def _apply_words(words: list[dict[str, Any]], spans: list[Span]) -> list[dict[str, Any]]:
    out, i = [], 0
    for s in spans:
        run = words[s.start:s.end]
        out += words[i:s.start] + [{"text": f"[{s.kind}]", "conf": min(w["conf"] for w in run),
                                    "start": run[0]["start"], "end": run[-1]["end"]}]
        i = s.end
    return out + words[i:]
