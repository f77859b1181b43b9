"""Counters an operator watches (`GET /metrics`, Prometheus text format).

One `Metrics` per application, each with its own CollectorRegistry, so several
servers in one process (the tests) never share or double-register counters.
Imports no other voicebot module: any layer may count.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# seconds: an answer within ~1 s feels natural on the phone; beyond 3 s callers talk over it
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
SHARE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
RATING_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0)
# 20 ms frames: a turn ended at its first pause waits 0.2 s (a little more when the
# answer came late), at a later one under the hangover 0.4, the hangover 0.5, the
# mid-phrase limit 0.8 (the defaults; a flow's question may set its own).
TURN_END_BUCKETS = (0.25, 0.45, 0.55, 0.85, 1.5, 3.0)  # [1]: ended at a pause (capacity.py --turns)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("voicebot_calls", "Calls accepted", ["gateway", "language"],
                             registry=r)
        self.over_capacity = Counter(
            "voicebot_calls_over_capacity",
            "Calls sent straight to a human because VOICEBOT_MAX_CALLS were running", registry=r)
        self.handoffs = Counter("voicebot_handoffs", "Calls handed to a human", ["reason"],
                                registry=r)
        self.outcomes = Counter("voicebot_calls_ended", "Calls ended, by outcome", ["outcome"],
                                registry=r)
        self.protocol_errors = Counter(
            "voicebot_protocol_errors", "Calls closed because the gateway sent something invalid",
            ["code"], registry=r)
        self.errors = Counter(
            "voicebot_errors", "Failures during calls, each sending its caller to a human: "
            "recognition, prompt, internal, protocol", ["kind"], registry=r)
        self.journalled = Counter(
            "voicebot_store_journalled", "Store writes kept in the local journal (DB unavailable)",
            registry=r)
        self.disclosures_played = Counter(
            "voicebot_disclosures_played", "AI disclosures that started playing", registry=r)
        self.disclosures_confirmed = Counter(
            "voicebot_disclosures_confirmed",
            "AI disclosures played to the end: by the gateway's mark echo, or by the timer "
            "when no echo came", ["by"], registry=r)
        self.confidence = Histogram(
            "voicebot_utterance_confidence", "Recogniser confidence of each caller utterance",
            ["language"], buckets=SHARE_BUCKETS, registry=r)
        self.recognition = Histogram(
            "voicebot_recognition_seconds",
            "End of speech (the VAD's decision) to the recogniser's result",
            buckets=LATENCY_BUCKETS, registry=r)
        self.response = Histogram(
            "voicebot_response_seconds",
            "End of speech (the VAD's decision) to the first audio of the bot's answer",
            buckets=LATENCY_BUCKETS, registry=r)
        self.speech_ratio = Histogram(
            "voicebot_vad_speech_ratio", "Share of a call's audio the VAD marked as speech",
            buckets=SHARE_BUCKETS, registry=r)
        self.engine = Gauge("voicebot_engine_info", "The speech engine serving calls (value 1)",
                            ["engine", "model", "language"], registry=r)
        self.desk_queue = Gauge("voicebot_desk_queue_length",
                                "Transfers waiting for an agent (waiting, callback)", ["status"],
                                registry=r)
        self.desk_oldest = Gauge("voicebot_desk_oldest_wait_seconds",
                                 "How long the oldest transfer in the queue has waited", registry=r)
        self.desk_wait = Histogram(
            "voicebot_desk_wait_seconds", "Handoff decided to an agent claiming the transfer",
            buckets=WAIT_BUCKETS, registry=r)
        self.fairness_flags = Gauge(
            "voicebot_fairness_flagged",
            "1 when a caller group's KPI is outside 0.8-1.25 of the best group's (last report)",
            ["dimension", "group", "kpi"], registry=r)
        self.csat_offered = Counter(
            "voicebot_csat_offered", "Post-call satisfaction surveys asked (calls the bot "
            "completed, with [flow] csat_survey)", registry=r)
        self.csat_results = Counter(
            "voicebot_csat_results", "Surveys rated or skipped: rated, silence, other_key, "
            "spoke, hung_up, person, interrupted", ["result"], registry=r)
        self.csat_rating = Histogram("voicebot_csat_rating", "Callers' satisfaction ratings (1-5)",
                                     buckets=RATING_BUCKETS, registry=r)
        self.second_opinions = Counter(
            "voicebot_second_opinions", "Callers' answers sent to the free-form engine, by what came "
            "of it (asked; answered, late, failed; busy: not asked)", ["result"], registry=r)
        self.fallback_opinions = Counter(
            "voicebot_second_opinion_fallbacks", "Turns the second opinion left not understood, sent to "
            "the larger model, by what came of it (as voicebot_second_opinions)", ["result"], registry=r)
        self.turn_end_silence = Histogram(
            "voicebot_turn_end_silence_seconds", "Silence after the caller's speech the bot waited "
            "before taking the turn as over: ~0.2 s where a whole expected phrase ended it at a pause, "
            "the hangover (VOICEBOT_VAD_HANGOVER_MS) or the mid-phrase limit otherwise",
            buckets=TURN_END_BUCKETS, registry=r)
        self.turns_joined = Counter(
            "voicebot_turns_joined", "Turns the caller spoke on after before the bot answered them, "
            "heard again as one with what followed (VOICEBOT_TURN_JOIN_MS)", registry=r)
        self.answers_held = Counter(
            "voicebot_answers_held", "Readings ready while the caller's voice was starting again: the "
            "answer waited (at most VOICEBOT_VAD_START_MS + 40 ms) to see whether they went on", registry=r)
        self.active = Gauge("voicebot_calls_active", "Calls in progress", registry=r)
        self.journal_pending = Gauge(
            "voicebot_journal_pending", "Store writes waiting in the journal for the DB", registry=r)

    def track_active(self, count: Callable[[], int]) -> None:
        self.active.set_function(count)

    def track_journal(self, count: Callable[[], int]) -> None:
        self.journal_pending.set_function(count)

    def set_engines(self, engines: dict[str, str], models: dict[str, str]) -> None:
        """`engines`: language → engine name; `models`: language → model ("" = embedded)."""
        self.engine.clear()
        for language, engine in engines.items():
            self.engine.labels(engine, models.get(language) or "embedded", language).set(1)

    def second_opinion(self, result: str) -> None:
        self.second_opinions.labels(result).inc()

    def fallback_opinion(self, result: str) -> None:
        self.fallback_opinions.labels(result).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. `sample("voicebot_calls_over_capacity_total")`."""
        return self.registry.get_sample_value(name, labels) or 0.0
