"""Composition root: builds the engines, the store and the routes."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from voicebot.asr.base import SpeechEngine
from voicebot.asr.workers import WorkerPoolEngine
from voicebot.audio.batch import FrameBatcher
from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallServices
from voicebot.config import Settings
from voicebot.dialog.flow import Flow
from voicebot.dialog.question import flow_topics
from voicebot.drain import Drain
from voicebot.errors import ConfigError
from voicebot.events import CallEventBus
from voicebot.flowrun import LINE_RATES, FlowReloader, build_speech, load_settings_flow
from voicebot.http_lookup import HttpLookups
from voicebot.metrics import CONTENT_TYPE, Metrics
from voicebot.ops.wiring import Operations
from voicebot.privacy import privacy_for
from voicebot.security_headers import add_security_headers
from voicebot.staff.admin import AdminRoutes
from voicebot.staff.optout import OptOuts
from voicebot.staff.privacy import PrivacyRoutes, Retention, keep_retention
from voicebot.staff.recordings import RecordingRoutes
from voicebot.staff.routes import DeskRoutes
from voicebot.staff.service import StaffDesk
from voicebot.storage.backends import data_errors, display
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.journal import JournalledStore
from voicebot.storage.optout import OptOutStore
from voicebot.storage.recordings import RecordingStore
from voicebot.storage.sealed import SealedCallStore
from voicebot.telephony.audiosocket import AudioSocketServer
from voicebot.telephony.call_route import CallRouteHandler
from voicebot.telephony.human_line import HumanLine, HumanLineHandler
from voicebot.telephony.native import NativeStreamHandler
from voicebot.telephony.twilio_ws import TwilioMediaHandler
from voicebot.telephony.twiml import TwimlHandlers
from voicebot.transcript.wiring import (
    start_fallback_opinion,
    start_meaning,
    start_second_opinion,
    start_transcripts,
)
from voicebot.tts.base import Synthesizer
from voicebot.tts.prompts import PromptCache
from voicebot.tts.pyttsx3_tts import Pyttsx3Synthesizer

log = logging.getLogger("voicebot")

REGISTRY = web.AppKey("registry", CallRegistry)
STARTUP = web.AppKey("startup", asyncio.Task)
OPS = web.AppKey("ops", Operations)
DESK = web.AppKey("desk", StaffDesk)
STORE = web.AppKey("store", JournalledStore)
AUDIOSOCKET = web.AppKey("audiosocket", AudioSocketServer)
RELOADER = web.AppKey("reloader", FlowReloader)
DRAIN = web.AppKey("drain", Drain)


def create_app(
    settings: Settings, *, engine: SpeechEngine | None = None,
    synthesizer: Synthesizer | None = None,
) -> web.Application:
    # aiosqlite logs every statement with its parameters (caller numbers, transcripts)
    # at DEBUG: keep it quiet whatever level the operator picks.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    flow = load_settings_flow(settings)  # a broken flow stops the server here, with every problem
    app = web.Application(client_max_size=settings.max_request_bytes)
    app.on_response_prepare.append(add_security_headers)
    parts = _build(app, settings, flow, engine, synthesizer)
    line = _add_routes(app, parts)
    _add_drain(app, parts)
    app.cleanup_ctx.append(functools.partial(_lifecycle, parts))

    async def end_feeds(app: web.Application) -> None:  # open SSE streams would delay shutdown
        parts.desk.feed.close()

    app.on_shutdown.append(end_feeds)
    if settings.audiosocket_port:
        _add_audiosocket(app, AudioSocketServer(settings, parts.registry, line))
    if settings.sip_port:
        _add_sip(app, settings, parts.registry, line)
    return app


@dataclass
class _Parts:
    """What the server is made of: built once by create_app, used by its routes and lifecycle."""
    settings: Settings
    flow: Flow
    registry: CallRegistry
    store: SealedCallStore  # what calls write through: sealed, then journalled, then the database
    events: CallEventBus
    desk: StaffDesk
    ops: Operations
    opt_outs: OptOuts
    recordings: RecordingStore
    engine: SpeechEngine | None  # given by the caller (tests, tools); else one per language is loaded
    synthesizer: Synthesizer | None


def _build(app: web.Application, settings: Settings, flow: Flow, engine: SpeechEngine | None,
           synthesizer: Synthesizer | None) -> _Parts:
    metrics = Metrics()
    registry = app[REGISTRY] = CallRegistry(settings.max_calls, metrics)
    journalled = app[STORE] = JournalledStore(
        SqlCallStore(settings.db, settings.db_timeout_s), settings.journal_path,
        timeout_s=settings.db_timeout_s, data_errors=data_errors(settings.db),
        on_journalled=metrics.journalled.inc)
    metrics.track_journal(lambda: journalled.pending)
    privacy = privacy_for(settings)  # outermost: neither the journal nor the DB sees plain data
    events = CallEventBus()
    desk = app[DESK] = StaffDesk(settings, privacy)
    events.subscribe(desk.on_call_event)
    ops = app[OPS] = registry.per_call = Operations(settings, metrics, desk, events, flow)
    opt_outs = OptOuts(OptOutStore(settings.db, settings.db_timeout_s), privacy, desk.staff, metrics)
    registry.opted_out = opt_outs.opted_out
    events.subscribe(opt_outs.on_call_event)
    return _Parts(settings, flow, registry, SealedCallStore(journalled, privacy), events, desk, ops, opt_outs,
                  RecordingStore(settings.recordings_path, privacy), engine, synthesizer)


def _add_routes(app: web.Application, parts: _Parts) -> HumanLine:
    """Every HTTP and WebSocket route; returns the line calls are handed over on."""
    settings, registry, router = parts.settings, parts.registry, app.router
    parts.ops.add_to(router)
    twiml = TwimlHandlers(settings, parts.store, parts.events)
    router.add_post("/twilio/voice", twiml.voice)
    router.add_post("/twilio/stream-ended", twiml.stream_ended)
    router.add_post("/twilio/dial-ended", twiml.dial_ended)
    router.add_get("/twilio/media", TwilioMediaHandler(settings, registry).handle)
    router.add_get("/v1/stream", NativeStreamHandler(settings, registry).handle)
    router.add_post("/v1/calls/{call_id}/human-line", HumanLineHandler(settings, twiml.line).handle)
    CallRouteHandler(settings, twiml.line).add_to(router)
    DeskRoutes(parts.desk, parts.store).add_to(router)
    PrivacyRoutes(parts.desk, parts.store, parts.opt_outs, parts.recordings).add_to(router)
    RecordingRoutes(parts.desk, parts.store, parts.recordings).add_to(router)
    AdminRoutes(parts.desk).add_to(router)
    router.add_get("/healthz", _health)
    router.add_get("/metrics", _metrics)
    return twiml.line


def _add_drain(app: web.Application, parts: _Parts) -> None:
    """On shutdown the calls still up go to a person; with VOICEBOT_DRAIN_S, SIGTERM
    first takes no new bot conversations and waits (that long at most) for the calls up to end."""
    registry, settings = parts.registry, parts.settings

    async def drain(app: web.Application) -> None:
        # runs after the listening sockets are closed: no new connections arrive
        log.info("shutting down: handing %d calls to the human line", len(registry.sessions))
        await registry.drain(settings.shutdown_grace_s)

    app.on_shutdown.append(drain)
    app[DRAIN] = Drain(registry, settings.drain_s)
    if settings.drain_s > 0:
        async def drain_on_sigterm(app: web.Application) -> None:  # replaces aiohttp's stop
            app[DRAIN].install()

        app.on_startup.append(drain_on_sigterm)


async def _lifecycle(parts: _Parts, app: web.Application) -> AsyncIterator[None]:
    settings, registry = parts.settings, parts.registry
    log.info("call database: %s", display(settings.db))
    await parts.store.open()  # first: it refuses data it cannot decrypt, before any thread starts
    await parts.recordings.check_keys()
    # Threads only move audio to the recognition processes and wait for
    # their answers, so there are enough for every call's open utterance.
    executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="asr")
    prompts = PromptCache(parts.synthesizer or Pyttsx3Synthesizer(settings.tts_rate))
    http = aiohttp.ClientSession()
    reloader = app[RELOADER] = FlowReloader(settings, registry, executor)
    await parts.desk.open()
    await parts.opt_outs.open()
    app[STARTUP] = asyncio.create_task(_prepare(parts, prompts, executor, http, reloader), name="startup")
    _on_sighup(reloader)
    rules = Retention(settings.retention_days, parts.recordings, settings.recording_retention_days)
    retention = asyncio.create_task(keep_retention(parts.store, parts.desk, rules),
                                    name="retention") if rules.active else None
    await parts.ops.open()
    yield
    if retention is not None:
        retention.cancel()
        await asyncio.gather(retention, return_exceptions=True)
    await registry.hang_up_all()
    await _close_opinions(registry)
    app[STARTUP].cancel()
    await asyncio.gather(app[STARTUP], return_exceptions=True)
    await parts.opt_outs.close()
    _on_sighup(None)
    await reloader.close()
    await http.close()
    await parts.desk.close()
    await parts.ops.close()
    await parts.store.close()
    prompts.close()
    executor.shutdown(wait=False, cancel_futures=True)
    if parts.engine is None:  # the recognisers start-up loaded are this server's to stop
        await _close_recognisers(registry)


async def _close_opinions(registry: CallRegistry) -> None:
    """The transcripts and the Whisper opinions' worker processes."""
    services = registry.services
    if services is None:
        return
    if services.transcripts is not None:
        await services.transcripts.close()
    for opinion in (services.opinion, services.fallback):
        if opinion is not None:
            await opinion.close()


async def _close_recognisers(registry: CallRegistry) -> None:
    if registry.services is None:
        return
    for runner in registry.services.recognisers.values():
        if isinstance(runner.engine, WorkerPoolEngine):
            await asyncio.get_running_loop().run_in_executor(None, runner.engine.close)


def _add_audiosocket(app: web.Application, server: AudioSocketServer) -> None:
    """Listen with the HTTP server. On shutdown: stop accepting first, let the
    drain hand its calls over like any other, then cut what is left (before
    the store closes)."""
    settings = server.settings
    app[AUDIOSOCKET] = server

    async def start(app: web.Application) -> None:
        await server.start(settings.audiosocket_host or settings.host, settings.audiosocket_port)

    async def stop_listening(app: web.Application) -> None:
        server.stop_listening()

    async def close(app: web.Application) -> None:
        await server.close(grace_s=1.0)  # the drain before this already waited for the calls

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop_listening)
    app.on_shutdown.append(close)


def _add_sip(app: web.Application, settings: Settings, registry: CallRegistry,
             line: HumanLine) -> None:
    try:  # the `sip` extra: only when asked for
        from voicebot.telephony.sip import SipEndpoint
    except ImportError as exc:
        raise ConfigError("sip_port", f"needs the sip extra (pip install 'voicebot[sip]'): {exc}") from None

    endpoint = SipEndpoint(settings, registry, line)

    async def start(app: web.Application) -> None:
        await endpoint.start(settings.sip_port)

    async def close(app: web.Application) -> None:
        await endpoint.close(grace_s=1.0)  # after the drain, like AudioSocket

    app.on_startup.append(start)
    app.on_shutdown.append(close)


async def _prepare(parts: _Parts, prompts: PromptCache, executor: ThreadPoolExecutor,
                   http: aiohttp.ClientSession, reloader: FlowReloader) -> None:
    """Load each language's recogniser and render the prompts; only then report healthy."""
    settings, flow, registry, engine = parts.settings, parts.flow, parts.registry, parts.engine
    store, desk, events, recordings = parts.store, parts.desk, parts.events, parts.recordings
    loop = asyncio.get_running_loop()
    speech = await build_speech(settings, flow, prompts, executor, engine=engine)
    engines = {code: runner.engine for code, runner in speech.runners.items()}
    for code, each in engines.items():
        log.info("speech engine (%s): %s", code, each.description)
    registry.metrics.set_engines({code: each.name for code, each in engines.items()},
                                 settings.language_models())
    if engines[settings.language].name != "vosk" and settings.language == "en":
        log.info("for production English, install a Vosk model (e.g. vosk-model-small-en-us-0.15, "
                 "see models/README.md) and set VOICEBOT_MODEL to its directory")
    if registry.per_call is not None:  # A/B disclosure wordings, in the default language
        await prompts.prerender(flow.voice(settings.language), registry.per_call.prompt_texts(),
                                LINE_RATES)
    log.info("flow %s: %d nodes; rendered %d prompts (%s)", flow.name, len(flow.nodes),
             speech.prompts_rendered, ", ".join(engines))
    runners = speech.runners
    reloader.speech = speech
    transcripts = await start_transcripts(settings, store, desk, events)
    opinion = await start_second_opinion(settings)
    if opinion is not None:
        opinion.observe = registry.metrics.second_opinion
    fallback = await start_fallback_opinion(settings, opinion)
    if fallback is not None:
        fallback.observe = registry.metrics.fallback_opinion
    meaning = await start_meaning(settings, opinion, fallback)
    if meaning is not None:  # the flow's examples encoded before the first caller's turn
        await asyncio.to_thread(meaning.prepare, flow_topics(flow, settings.language))
    registry.services = CallServices(settings, runners[settings.language], prompts, store, flow, events,
                                     frames=FrameBatcher(loop.call_later), recognisers=runners,
                                     lookups=HttpLookups(http, settings.lookup_secret),
                                     transcripts=transcripts, opinion=opinion, fallback=fallback,
                                     recordings=recordings if settings.recording == "consent" else None)


def _on_sighup(reloader: FlowReloader | None) -> None:
    """SIGHUP reloads the flow (POSIX only; elsewhere the flow loads at start only)."""
    if not hasattr(signal, "SIGHUP"):
        return
    loop = asyncio.get_running_loop()
    try:
        if reloader is None:
            loop.remove_signal_handler(signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
    except (ValueError, RuntimeError):  # a loop outside the main thread (embedded, tests): no signals
        log.debug("no SIGHUP reload: the event loop is not in the main thread")


async def _health(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    startup = request.app[STARTUP]
    if startup.done() and not startup.cancelled() and startup.exception() is not None:
        # the reason (which may name files) is in the log, not on this open endpoint
        return web.json_response({"status": "failed", "error": "start-up failed; see the log"},
                                 status=503)
    if not registry.ready:
        return web.json_response({"status": "starting"}, status=503)
    if request.app[DRAIN].active:  # a load balancer sends new calls elsewhere
        return web.json_response({"status": "draining", "calls": len(registry.sessions)},
                                 status=503)
    assert registry.services is not None
    metrics = registry.metrics
    model = registry.services.settings.model
    return web.json_response({  # names only: no install paths to anyone who can connect
        "status": "ok", "engine": registry.services.asr.engine.name,
        "model": Path(model).name if model else "embedded",
        "flow": registry.services.flow.name, "flow_reloads": request.app[RELOADER].reloads,
        "languages": list(registry.services.languages),
        "calls": len(registry.sessions), "max_calls": registry.max_calls,
        "over_capacity": int(metrics.sample("voicebot_calls_over_capacity_total")),
        "store": "ok" if request.app[STORE].up else "journalling",
        "journal_pending": request.app[STORE].pending,
        "transcripts": registry.services.transcripts.health() if registry.services.transcripts
        else "off",
        "second_opinion": registry.services.opinion.health() if registry.services.opinion else "off",
        "second_opinion_fallback": registry.services.fallback.health() if registry.services.fallback else "off",
    })


async def _metrics(request: web.Request) -> web.Response:
    await request.app[OPS].before_scrape()
    body = request.app[REGISTRY].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
