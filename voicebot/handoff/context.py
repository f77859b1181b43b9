"""What the human who takes over receives: reason, transcript, a short summary."""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.privacy.redact import redact
from voicebot.types import HandoffReason, Source, Utterance

REASON_TEXT = {
    HandoffReason.CALLER_REQUEST: "the caller asked for a person",
    HandoffReason.LOW_CONFIDENCE: "the bot could not understand the caller",
    HandoffReason.NO_INPUT: "the caller did not say anything the bot could hear",
    HandoffReason.UNRESOLVED: "the bot could not help with the caller's request",
    HandoffReason.SYSTEM_ERROR: "the bot had a technical problem",
    HandoffReason.ROUTED: "the bot's flow sends this request to a person",
    HandoffReason.LOOKUP_FAILED: "the bot could not look up the caller's request",
    HandoffReason.OVER_CAPACITY: "the bot was at capacity",
    HandoffReason.MAX_DURATION: "the call reached the bot's time limit",
    HandoffReason.MEDIA_TIMEOUT: "the caller's audio stopped arriving",
    HandoffReason.SHUTDOWN: "the bot was shutting down",
    HandoffReason.OPTED_OUT: "the caller opted out of the automated assistant",
}

# Handed over without listening (a caller who opted out on an earlier call, a full
# server, one shutting down): "said nothing" would tell the staff the line was silent.
NOT_LISTENED = frozenset((HandoffReason.OPTED_OUT, HandoffReason.OVER_CAPACITY, HandoffReason.SHUTDOWN))

# labels of the default flow's intents, for records made without a flow at hand
INTENT_TEXT = {
    "order_status": "order status",
    "password_reset": "a password reset",
    "human": "a person",
}


@dataclass(frozen=True)
class HandoffContext:
    reason: HandoffReason
    target: str
    transcript: tuple[Utterance, ...]
    summary: str


def summarise(
    transcript: tuple[Utterance, ...], reason: HandoffReason | None, answered: list[str],
    labels: dict[str, str] | None = None,
) -> str:
    """One or two plain sentences a human can read in the time the phone rings."""
    labels = {**INTENT_TEXT, **(labels or {}), "human": "a person"}
    wanted = [labels[u.intent] for u in transcript if u.intent in labels]
    parts = []
    topics = [w for w in dict.fromkeys(wanted) if w != "a person"]
    if topics:
        parts.append("Caller asked about " + " and ".join(topics) + ".")
    elif not transcript:
        if reason not in NOT_LISTENED:
            parts.append("Caller said nothing the bot could hear.")
    else:
        heard = [u for u in transcript if u.source is Source.SPEECH and u.text]
        if heard:
            parts.append(f'Caller said "{redact(heard[-1].text)}".')  # shown, sent, stored
    if answered:
        parts.append("Bot already gave the self-service answer for "
                     + " and ".join(INTENT_TEXT[a] for a in answered) + ".")
    if reason is not None:
        parts.append(f"Handed over because {REASON_TEXT[reason]}.")
    return " ".join(parts)
