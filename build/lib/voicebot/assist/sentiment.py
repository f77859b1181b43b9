"""Caller sentiment per utterance and per call, with a trend.

VADER (a lexicon and rule model, vaderSentiment on PyPI) runs offline in
well under a millisecond per sentence. It only knows English: other languages
get no score rather than a wrong one. The lexicon loads once (~0.1 s), so the
app warms it up at start, off the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

NEUTRAL_BAND = 0.05  # VADER's own convention for "neutral"
TREND_STEP = 0.2

_lock = threading.Lock()
_analyzer: Any = None


def analyzer() -> Any:
    global _analyzer  # one lexicon per process, loaded on first use
    with _lock:
        if _analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _analyzer = SentimentIntensityAnalyzer()
        return _analyzer


@dataclass(frozen=True)
class CallSentiment:
    available: bool
    per_utterance: tuple[float | None, ...]  # compound score in [-1, 1]; None = not speech
    score: float | None
    label: str  # negative | neutral | positive | unavailable
    trend: str  # improving | worsening | steady | unknown

    def to_json(self) -> dict[str, Any]:
        return {"available": self.available, "per_utterance": list(self.per_utterance),
                "score": self.score, "label": self.label, "trend": self.trend}


def score_text(text: str) -> float:
    return round(float(analyzer().polarity_scores(text)["compound"]), 3)


def label(score: float | None) -> str:
    if score is None:
        return "unavailable"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "positive" if score >= NEUTRAL_BAND else "neutral"


def call_sentiment(utterances: list[dict[str, Any]], language: str) -> CallSentiment:
    if language != "en":
        return CallSentiment(False, tuple(None for _ in utterances), None, "unavailable", "unknown")
    per = tuple(score_text(u["text"]) if u.get("source") != "dtmf" and u.get("text") else None
                for u in utterances)
    scores = [s for s in per if s is not None]
    if not scores:
        return CallSentiment(True, per, None, "neutral", "unknown")
    # the latest turns say most about the mood the agent is about to meet
    weights = range(1, len(scores) + 1)
    score = round(sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights), 3)
    return CallSentiment(True, per, score, label(score), _trend(scores))


def _trend(scores: list[float]) -> str:
    if len(scores) < 2:
        return "steady"
    delta = scores[-1] - scores[0]
    if delta >= TREND_STEP:
        return "improving"
    return "worsening" if delta <= -TREND_STEP else "steady"
