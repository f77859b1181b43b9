"""`voicebot` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError

log = logging.getLogger("voicebot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="answer calls: start the HTTP/WebSocket server")
    serve.add_argument("--config", help="TOML settings file (VOICEBOT_* variables override it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--model", help="Vosk model directory or name (default: embedded English)")
    serve.add_argument("--language", choices=("en", "ko"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, host=args.host, port=args.port,
                                 model=args.model, language=args.language)
    except ConfigError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    return _serve(settings)


def _serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voicebot.app import STARTUP, create_app

    _warn_about_open_ingress(settings)
    app = create_app(settings)
    failure: list[BaseException] = []

    async def watch_startup(app: web.Application) -> None:
        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                failure.append(task.exception())  # type: ignore[arg-type]
                log.critical("start-up failed: %s", task.exception())
                os.kill(os.getpid(), signal.SIGTERM)
            elif not task.cancelled():
                log.info("ready: answering calls on http://%s:%d", settings.host, settings.port)

        app[STARTUP].add_done_callback(done)

    app.on_startup.append(watch_startup)
    log.info("listening on http://%s:%d (Twilio webhook: POST /twilio/voice, native: WS /v1/stream)",
             settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                shutdown_timeout=10, handle_signals=True)
    return 1 if failure else 0


def _warn_about_open_ingress(settings: Settings) -> None:
    if not settings.twilio_auth_token:
        log.warning("VOICEBOT_TWILIO_AUTH_TOKEN is not set: Twilio requests are NOT verified")
    if not settings.stream_token:
        log.warning("VOICEBOT_STREAM_TOKEN is not set: /v1/stream accepts anyone who can reach it")
    if not settings.public_url:
        log.warning("VOICEBOT_PUBLIC_URL is not set: TwiML will not point Twilio back here")


if __name__ == "__main__":
    sys.exit(main())
