"""Composition root: builds the engines, the store and the routes."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
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
from voicebot.storage.base import CallStore
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
from voicebot.transcript.wiring import start_fallback_opinion, start_second_opinion, start_transcripts
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
    metrics = Metrics()
    registry = CallRegistry(settings.max_calls, metrics)
    journalled = JournalledStore(
        SqlCallStore(settings.db, settings.db_timeout_s), settings.journal_path,
        timeout_s=settings.db_timeout_s, data_errors=data_errors(settings.db),
        on_journalled=metrics.journalled.inc)
    metrics.track_journal(lambda: journalled.pending)
    privacy = privacy_for(settings)  # outermost: neither the journal nor the DB sees plain data
    store = SealedCallStore(journalled, privacy)
    app[REGISTRY] = registry
    app[STORE] = journalled
    events = CallEventBus()
    desk = app[DESK] = StaffDesk(settings, privacy)
    events.subscribe(desk.on_call_event)
    ops = app[OPS] = registry.per_call = Operations(settings, metrics, desk, events, flow)
    ops.add_to(app.router)
    twiml = TwimlHandlers(settings, store, events)
    human_line = HumanLineHandler(settings, twiml.line)
    app.router.add_post("/twilio/voice", twiml.voice)
    app.router.add_post("/twilio/stream-ended", twiml.stream_ended)
    app.router.add_post("/twilio/dial-ended", twiml.dial_ended)
    app.router.add_get("/twilio/media", TwilioMediaHandler(settings, registry).handle)
    app.router.add_get("/v1/stream", NativeStreamHandler(settings, registry).handle)
    app.router.add_post("/v1/calls/{call_id}/human-line", human_line.handle)
    CallRouteHandler(settings, twiml.line).add_to(app.router)
    DeskRoutes(desk, store).add_to(app.router)
    opt_outs = OptOuts(OptOutStore(settings.db, settings.db_timeout_s), privacy, desk.staff, metrics)
    registry.opted_out = opt_outs.opted_out
    events.subscribe(opt_outs.on_call_event)
    recordings = RecordingStore(settings.recordings_path, privacy)
    PrivacyRoutes(desk, store, opt_outs, recordings).add_to(app.router)
    RecordingRoutes(desk, store, recordings).add_to(app.router)
    AdminRoutes(desk).add_to(app.router)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/metrics", _metrics)

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

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Threads only move audio to the recognition processes and wait for
        # their answers, so there are enough for every call's open utterance.
        log.info("call database: %s", display(settings.db))
        await store.open()  # first: it refuses data it cannot decrypt, before any thread starts
        await recordings.check_keys()
        executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="asr")
        prompts = PromptCache(synthesizer or Pyttsx3Synthesizer(settings.tts_rate))
        http = aiohttp.ClientSession()
        reloader = app[RELOADER] = FlowReloader(settings, registry, executor)
        await desk.open()
        await opt_outs.open()
        app[STARTUP] = asyncio.create_task(
            _prepare(settings, flow, registry, store, prompts, executor, engine, events, http, reloader,
                     desk, recordings),
            name="startup")
        _on_sighup(reloader)
        rules = Retention(settings.retention_days, recordings, settings.recording_retention_days)
        retention = asyncio.create_task(keep_retention(store, desk, rules),
                                        name="retention") if rules.active else None
        await ops.open()
        yield
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        await registry.hang_up_all()
        if registry.services is not None and registry.services.transcripts is not None:
            await registry.services.transcripts.close()
        if registry.services is not None:
            for opinion in (registry.services.opinion, registry.services.fallback):
                if opinion is not None:
                    await opinion.close()
        app[STARTUP].cancel()
        await asyncio.gather(app[STARTUP], return_exceptions=True)
        await opt_outs.close()
        _on_sighup(None)
        await reloader.close()
        await http.close()
        await desk.close()
        await ops.close()
        await store.close()
        prompts.close()
        executor.shutdown(wait=False, cancel_futures=True)
        owned = [r.engine for r in registry.services.recognisers.values()] \
            if registry.services and engine is None else []
        for pool in owned:
            if isinstance(pool, WorkerPoolEngine):
                await asyncio.get_running_loop().run_in_executor(None, pool.close)

    app.cleanup_ctx.append(lifecycle)

    async def end_feeds(app: web.Application) -> None:  # open SSE streams would delay shutdown
        desk.feed.close()

    app.on_shutdown.append(end_feeds)
    if settings.audiosocket_port:
        _add_audiosocket(app, AudioSocketServer(settings, registry, twiml.line))
    if settings.sip_port:
        _add_sip(app, settings, registry, twiml.line)
    return app


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


async def _prepare(
    settings: Settings, flow: Flow, registry: CallRegistry, store: CallStore, prompts: PromptCache,
    executor: ThreadPoolExecutor, engine: SpeechEngine | None, events: CallEventBus,
    http: aiohttp.ClientSession, reloader: FlowReloader, desk: StaffDesk, recordings: RecordingStore,
) -> None:
    """Load each language's recogniser and render the prompts; only then report healthy."""
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
