"""Counters an operator watches (`GET /metrics`, Prometheus text format).

One `Metrics` per application, each with its own CollectorRegistry, so several
servers in one process (the tests) never share or double-register counters.
Imports no other voicebot module: any layer may count.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("voicebot_calls", "Calls accepted", ["gateway"], registry=r)
        self.over_capacity = Counter(
            "voicebot_calls_over_capacity",
            "Calls sent straight to a human because VOICEBOT_MAX_CALLS were running", registry=r)
        self.handoffs = Counter("voicebot_handoffs", "Calls handed to a human", ["reason"],
                                registry=r)
        self.protocol_errors = Counter(
            "voicebot_protocol_errors", "Calls closed because the gateway sent something invalid",
            ["code"], registry=r)
        self.journalled = Counter(
            "voicebot_store_journalled", "Store writes kept in the local journal (DB unavailable)",
            registry=r)
        self.active = Gauge("voicebot_calls_active", "Calls in progress", registry=r)
        self.journal_pending = Gauge(
            "voicebot_journal_pending", "Store writes waiting in the journal for the DB", registry=r)

    def track_active(self, count: Callable[[], int]) -> None:
        self.active.set_function(count)

    def track_journal(self, count: Callable[[], int]) -> None:
        self.journal_pending.set_function(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. `sample("voicebot_calls_over_capacity_total")`."""
        return self.registry.get_sample_value(name, labels) or 0.0
