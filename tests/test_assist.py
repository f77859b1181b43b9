"""Agent assist, one stage at a time: summary, sentiment, knowledge base, next action."""

from __future__ import annotations

from pathlib import Path

from voicebot.assist.advice import assist_for
from voicebot.assist.knowledge import KnowledgeBase, load_articles
from voicebot.assist.sentiment import call_sentiment, label
from voicebot.assist.summary import bot_tried, find_entities, main_intent, spoken_digits
from voicebot.storage.base import CallRecord, utterance_json
from voicebot.types import Source, Utterance

from .staff_helpers import KNOWLEDGE


def said(*texts: str, intents: tuple[str | None, ...] = ()) -> list[dict]:
    intents = intents or (None,) * len(texts)
    return [utterance_json(Utterance(t, 0.9, i, i + 1, Source.SPEECH, intent))
            for i, (t, intent) in enumerate(zip(texts, intents, strict=True))]


def test_entities_order_numbers_spoken_or_typed_emails_and_keyed_digits():
    utterances = said("my order number is one two three four five six",
                      "it's order #98-76-54 and my email is jo.smith+x@example.co.uk",
                      "call me at 12")
    utterances.append(utterance_json(Utterance("4", 1.0, 9, 9, Source.DTMF)))
    utterances.append(utterance_json(Utterance("2", 1.0, 9, 9, Source.DTMF)))
    found = [(e.kind, e.value, e.utterance) for e in find_entities(utterances)]
    assert found == [("order_number", "123456", 0), ("email", "jo.smith+x@example.co.uk", 1),
                     ("order_number", "987654", 1), ("keyed_digits", "42", 4)]
    assert spoken_digits("one two oh and nine") == "120 and 9"
    assert find_entities(said("i want to speak to a person")) == []


def test_intent_prefers_the_latest_routine_request_and_bot_tried_counts_prompts():
    assert main_intent(said("password", "order", "agent", intents=(
        "password_reset", "order_status", "human"))) == "order_status"
    assert main_intent(said("agent", intents=("human",))) == "human"
    assert main_intent(said("blah")) == "unknown"
    prompts = [{"name": n} for n in ("disclosure", "menu", "didnt_catch", "didnt_catch",
                                     "order_status", "handoff")]
    assert bot_tried(prompts) == ["offered the menu", "asked the caller to repeat (2×)",
                                  "gave the order-status self-service answer"]


def test_sentiment_per_utterance_weighted_call_score_and_trend():
    worse = call_sentiment(said("thanks, that is great", "this is useless and i am angry"), "en")
    assert worse.per_utterance[0] > 0.5 and worse.per_utterance[1] < -0.5
    assert worse.trend == "worsening" and worse.label == "negative"  # later turns weigh more
    better = call_sentiment(said("this is terrible", "ok great thank you so much"), "en")
    assert better.trend == "improving" and better.label == "positive"
    assert call_sentiment(said("where is my order"), "en").label == "neutral"
    ko = call_sentiment(said("상담원"), "ko")
    assert not ko.available and ko.score is None and ko.label == "unavailable"
    assert label(-0.05) == "negative" and label(0.0) == "neutral" and label(0.05) == "positive"


def test_knowledge_base_ranks_articles_and_shows_the_matched_words(tmp_path: Path):
    kb = KnowledgeBase.from_folder(KNOWLEDGE)
    assert len(kb.articles) >= 5
    top = kb.suggest(["i forgot my password and now i'm locked out"])
    assert top[0].article.id == "password-reset"
    assert set(top[0].matched) >= {"password", "forgot", "locked out"}
    refund = kb.suggest(["the item arrived broken i want my money back"])
    assert refund[0].article.id == "refund" and "money back" in refund[0].matched
    assert kb.suggest(["hello there"]) == []

    (tmp_path / "good.toml").write_text('title = "Opening hours"\nkeywords = ["open", "hours"]\n'
                                        'body = "9 to 5"\n')
    (tmp_path / "broken.toml").write_text("title = \n")
    (tmp_path / "untitled.toml").write_text('keywords = ["x"]\n')
    assert [a.id for a in load_articles(tmp_path)] == ["good"]  # bad files are skipped
    assert KnowledgeBase.from_folder(tmp_path / "missing").articles == []


def test_next_action_follows_reason_intent_entities_and_mood():
    kb = KnowledgeBase.from_folder(KNOWLEDGE)

    def action(texts, intents, reason, prompts=()):
        record = CallRecord("c", "native", utterances=said(*texts, intents=intents),
                            prompts=[{"name": p} for p in prompts], handoff_reason=reason)
        return assist_for(record, kb).next_action

    assert action(["where is my order one two three four"], ("order_status",), "caller_request",
                  ["order_status"]).startswith("Look up order 1234 and give the delivery status "
                                               "(the self-service answer did not solve it)")
    assert action(["where is my order"], ("order_status",), "unresolved").startswith(
        "Ask for the order number")
    assert "Verify the caller's identity" in action(["i forgot my password"],
                                                    ("password_reset",), "caller_request")
    assert action(["mumble"], (None,), "low_confidence").startswith("Confirm what the caller needs")
    assert action(["this is stupid and useless i hate it get me a person"], ("human",),
                  "caller_request").startswith("Acknowledge the caller's frustration")
