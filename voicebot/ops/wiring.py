"""Operations, attached to the app in one place: live metrics from calls, call
labels, the report routes, the fairness watch, and each call's A/B variants.

`Operations.services_for` is the registry's per-call hook: a call runs with
its variants' settings and writes through the metrics observer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from voicebot.call.session import CallServices
from voicebot.config import Settings
from voicebot.dialog.flow import Flow
from voicebot.errors import ConfigError
from voicebot.events import CallEventBus
from voicebot.metrics import Metrics
from voicebot.ops.abtest import Experiments
from voicebot.ops.calls import SqlCallSource
from voicebot.ops.observer import CallObserver, DeskGauges
from voicebot.ops.report import flow_understanding
from voicebot.ops.routes import ReportRoutes, watch_fairness
from voicebot.ops.tags import CallTagger, TagStore
from voicebot.privacy.crypto import Privacy
from voicebot.staff.service import StaffDesk
from voicebot.storage.desk import DeskStore
from voicebot.storage.sealed import unseal_item

log = logging.getLogger(__name__)


def sealed_source(db: str, privacy: Privacy | None) -> SqlCallSource:
    """A report reader that opens what privacy sealed (numbers, words, desk notes)."""
    if privacy is None:  # a desk without privacy sealed nothing
        return SqlCallSource(db)
    return SqlCallSource(db, desk=lambda path: DeskStore(path, privacy),
                            reveal=lambda item: unseal_item(privacy, "utterance", item))


class Operations:
    def __init__(self, settings: Settings, metrics: Metrics, desk: StaffDesk,
                 events: CallEventBus, flow: Flow) -> None:
        """Raises ConfigError for a bad experiments file: the server does not start.
        `flow` gives the understanding the reports judge intents with (the flow at
        start; a SIGHUP reload does not change it)."""
        self.settings = settings
        self.metrics = metrics
        self.experiments = (Experiments.from_file(settings.experiments, settings)
                            if settings.experiments else Experiments([]))
        clash = self.experiments.names() & {e.name for e in flow.experiments}
        if clash:
            raise ConfigError("experiments", f"{', '.join(sorted(clash))}: named by the flow "
                              "and by the experiments file; rename one")
        self.observer = CallObserver(metrics)
        self.tagger = CallTagger(TagStore(settings.db, settings.db_timeout_s))
        self.gauges = DeskGauges(metrics, desk.desk)
        self.reports = sealed_source(settings.db, desk.privacy)
        self.intent_of = flow_understanding(flow)
        self.routes = ReportRoutes(desk, self.reports, settings, metrics, self.intent_of, flow)
        events.subscribe(self.observer.on_call_event)
        events.subscribe(self.tagger.on_call_event)
        self._fairness: asyncio.Task[None] | None = None

    def add_to(self, router: web.UrlDispatcher) -> None:
        self.routes.add_to(router)

    def services_for(self, call_id: str, services: CallServices) -> CallServices:
        services = self.experiments.services_for(call_id, services)
        return dataclasses.replace(services, store=self.observer.observe(services.store))

    def prompt_texts(self) -> list[str]:
        """Prompts the variants need rendered before the first call (disclosure wordings)."""
        return self.experiments.prompt_texts()

    async def open(self) -> None:
        """After the call store (the labels' trigger needs the calls table)."""
        await self.tagger.open()
        if self.reports is not None:
            self._fairness = asyncio.create_task(
                watch_fairness(self.reports, self.settings, self.metrics, self.intent_of),
                name="fairness")

    async def close(self) -> None:
        if self._fairness is not None:
            self._fairness.cancel()
            await asyncio.gather(self._fairness, return_exceptions=True)
        await self.tagger.close()

    async def before_scrape(self) -> None:
        try:
            await self.gauges.refresh()
        except Exception as exc:  # noqa: BLE001 - the call series still matter with the desk DB down
            log.warning("metrics: desk queue unavailable: %s", type(exc).__name__)
