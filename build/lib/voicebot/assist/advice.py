"""Agent assist for one call: summary, sentiment, knowledge suggestions and a
suggested next best action, computed from the stored record (offline, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicebot.assist.knowledge import KnowledgeBase, Suggestion
from voicebot.assist.sentiment import CallSentiment, call_sentiment
from voicebot.assist.summary import CallSummary, summarise_call
from voicebot.storage.base import CallRecord


@dataclass(frozen=True)
class Assist:
    summary: CallSummary
    sentiment: CallSentiment
    suggestions: tuple[Suggestion, ...]
    next_action: str

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary.to_json(), "sentiment": self.sentiment.to_json(),
                "suggestions": [s.to_json() for s in self.suggestions],
                "next_action": self.next_action}


def assist_for(record: CallRecord, kb: KnowledgeBase) -> Assist:
    utterances = record.utterances
    summary = summarise_call(utterances, record.prompts, record.handoff_reason)
    sentiment = call_sentiment(utterances, record.language)
    heard = [u["text"] for u in utterances if u.get("source") != "dtmf" and u.get("text")]
    suggestions = tuple(kb.suggest(heard))
    return Assist(summary, sentiment, suggestions, next_action(summary, sentiment, suggestions))


def next_action(summary: CallSummary, sentiment: CallSentiment,
                suggestions: tuple[Suggestion, ...]) -> str:
    """One sentence: what the agent should do first. Ordered rules, first match wins."""
    opening = "Acknowledge the caller's frustration, then " if sentiment.label == "negative" else ""
    order = next((e.value for e in summary.entities if e.kind == "order_number"), None)
    if summary.reason == "system_error":
        step = "apologise for the technical problem and ask how you can help"
    elif summary.reason in ("low_confidence", "no_input"):
        step = ("confirm what the caller needs: the bot did not understand them, "
                "so the transcript may be wrong")
    elif summary.intent == "order_status":
        step = f"look up order {order}" if order else "ask for the order number and look it up"
        step += " and give the delivery status"
    elif summary.intent == "password_reset":
        step = "verify the caller's identity, then send a reset link or unlock the account"
    elif summary.intent == "unknown" and suggestions:
        step = f'check the article "{suggestions[0].article.title}"'
    else:
        step = ("greet the caller, say you can see what they told the bot, "
                "and ask how you can help")
    if summary.intent != "unknown" and "self-service" in " ".join(summary.bot_tried):
        step += " (the self-service answer did not solve it)"
    sentence = opening + step if opening else step[0].upper() + step[1:]
    return sentence + "."
