"""The report on the supervisor desk (`GET /api/reports/kpi`), and the fairness
flags kept current as a metric (`voicebot_fairness_flagged`)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from voicebot.config import Settings
from voicebot.dialog.flow import Flow
from voicebot.metrics import Metrics
from voicebot.ops.abtest import controls_of
from voicebot.ops.calls import REVIEW_KINDS, CallSource
from voicebot.ops.kpi import IntentOf
from voicebot.ops.report import build_report, parse_when, render
from voicebot.staff.service import StaffDesk

log = logging.getLogger(__name__)

FAIRNESS_WINDOW_S = 7 * 86400
MAX_WINDOW_S = 92 * 86400  # the page reads every call of the window; longer: `voicebot report`
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"  # no scripts at all
FAIRNESS_EVERY_S = 900.0
FAIRNESS_FIRST_S = 60.0  # let start-up (engine, prompts) have the machine first


class ReportRoutes:
    def __init__(self, desk: StaffDesk, source: CallSource | None, settings: Settings,
                 metrics: Metrics, intent_of: IntentOf | None = None,
                 flow: Flow | None = None) -> None:
        """`flow`: the flow at start, whose experiments' first variants are the controls."""
        self.flow = flow
        self.d = desk
        self.source = source
        self.settings = settings
        self.metrics = metrics
        self.intent_of = intent_of

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/reports/kpi", self.kpi)
        router.add_get("/api/review/sample", self.review_sample)

    async def review_sample(self, request: web.Request) -> web.Response:
        """`?n=10&since=7d`: bot-completed calls nobody reviewed yet, drawn at random, for a
        supervisor to read and mark (reviewed_ok, or transcript_wrong with the correction);
        the marks feed the accuracy KPI."""
        who = await self.d.auth.require(request, "supervisor")
        try:
            n = int(request.query.get("n", "10"))
            since = parse_when(request.query.get("since", "7d"), time.time())
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if not 1 <= n <= 100:
            raise web.HTTPBadRequest(text="n must be 1-100")
        rows = await self.d.desk.rows(
            "SELECT call_id, gateway, language, started_at, ended_at, outcome, summary FROM calls "
            "WHERE outcome = 'completed' AND started_at >= ? AND call_id NOT IN (SELECT call_id "
            f"FROM desk_feedback WHERE kind IN {REVIEW_KINDS!r}) ORDER BY random() LIMIT ?",
            (since, n))
        await self.d.staff.audit(who.name, who.role, "review_sample", "", f"{len(rows)} calls")
        return web.json_response({"calls": rows})

    async def kpi(self, request: web.Request) -> web.Response:
        """`?since=7d&until=...&format=json|html|table` (supervisors)."""
        await self.d.auth.require(request, "supervisor")
        if self.source is None:
            raise web.HTTPNotImplemented(text="reports read a SQLite call database; "
                                              "this server's database is not one")
        q = request.query
        now = time.time()
        fmt = q.get("format", "json")
        if fmt not in ("json", "html", "table"):
            raise web.HTTPBadRequest(text="format is json, html or table")
        try:
            since = parse_when(q.get("since", "7d"), now)
            until = parse_when(q["until"], now) if q.get("until") else now
            min_calls = int(q.get("min_group", "5"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if not until - MAX_WINDOW_S <= since < until or min_calls < 1:
            raise web.HTTPBadRequest(text="since must be before until (at most 92 days), "
                                          "min_group at least 1")
        report = await build_report(self.source, since, until, min_calls=min_calls,
                                    threshold=self.settings.confidence_threshold,
                                    controls=controls_of(self.settings, self.flow), intent_of=self.intent_of)
        set_fairness(self.metrics, report["fairness"])
        # matplotlib takes a moment per chart: off the event loop
        body = await asyncio.get_running_loop().run_in_executor(None, render, report, fmt)
        kind = {"json": "application/json", "html": "text/html", "table": "text/plain"}[fmt]
        return web.Response(text=body, content_type=kind, charset="utf-8",
                            headers={"Content-Security-Policy": REPORT_CSP,
                                     "Cache-Control": "no-store"})


def set_fairness(metrics: Metrics, fairness: dict[str, object]) -> None:
    """1 for each flagged (dimension, group, figure), 0 for every other one compared."""
    gauge = metrics.fairness_flags
    gauge.clear()
    dimensions = fairness["dimensions"]
    assert isinstance(dimensions, dict)
    for dimension, groups in dimensions.items():
        for group, g in groups.items():
            for kpi, ratio in g["ratios"].items():
                if ratio is not None and g["enough_calls"]:
                    gauge.labels(dimension, group, kpi).set(1 if kpi in g["flagged"] else 0)


async def watch_fairness(source: CallSource, settings: Settings, metrics: Metrics,
                         intent_of: IntentOf | None = None) -> None:
    """For the life of the server: the last 7 days' fairness flags, every 15 minutes."""
    await asyncio.sleep(FAIRNESS_FIRST_S)
    while True:
        try:
            now = time.time()
            report = await build_report(source, now - FAIRNESS_WINDOW_S, now,
                                        threshold=settings.confidence_threshold,
                                        intent_of=intent_of)
            set_fairness(metrics, report["fairness"])
        except Exception:  # a failed pass must not end the watch for the server's life
            log.exception("fairness check failed; trying again in %g s", FAIRNESS_EVERY_S)
        await asyncio.sleep(FAIRNESS_EVERY_S)
