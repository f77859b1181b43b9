"""`voicebot` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from voicebot import flows_cli
from voicebot.audio.wav import WavError
from voicebot.audit_cli import add_audit_parser, run_audit
from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError
from voicebot.ops.cli import add_report_parser, run_report
from voicebot.privacy_cli import add_privacy_parser, run_privacy
from voicebot.staff.cli import add_staff_parser, run_staff

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
    serve.add_argument("--flow", help="flow file (TOML); default: the packaged default flow")
    serve.add_argument("--audiosocket-port", type=int,
                       help="also accept Asterisk AudioSocket() calls on this TCP port")
    serve.add_argument("--sip-port", type=int,
                       help="also answer SIP calls (UDP) on this port (needs the `sip` extra)")
    _add_replay(sub)
    flows_cli.add_parser(sub)
    _add_models(sub)
    add_report_parser(sub)
    add_staff_parser(sub)
    add_privacy_parser(sub)
    add_audit_parser(sub)
    transcribe = sub.add_parser("transcribe", help="recognise recordings offline, no server")
    transcribe.add_argument("files", nargs="+", type=Path)
    transcribe.add_argument("--json", action="store_true", help="one JSON object per file")
    transcribe.add_argument("--config")
    transcribe.add_argument("--model", help="the engine's model (for vosk/whisper: a directory "
                            "or a known name such as whisper-tiny.en)")
    transcribe.add_argument("--language", choices=("en", "ko"))
    transcribe.add_argument("--engine", choices=("decision", "vosk", "whisper"), default="decision",
                            help="decision: the call's own engine (VOICEBOT_MODEL); vosk, whisper: "
                            "the free-form transcript engine (VOICEBOT_TRANSCRIPT_MODEL)")
    args = parser.parse_args(argv)
    if args.command == "flows":
        return flows_cli.run(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "models":
        return _models(args)
    try:
        overrides = {"host": args.host, "port": args.port, "flow": args.flow,
                     "audiosocket_port": args.audiosocket_port,
                     "sip_port": args.sip_port} if args.command == "serve" else {}
        if getattr(args, "engine", "decision") != "decision":  # transcribe --engine whisper|vosk
            overrides.update(transcript_engine=args.engine, transcript_model=args.model)
            args.model = None
        settings = load_settings(args.config, model=getattr(args, "model", None),
                                 language=getattr(args, "language", None), **overrides)
    except ConfigError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    if args.command == "report":
        return run_report(args, settings)
    if args.command == "transcribe":
        return _transcribe(settings, args.files, args.json, args.engine)
    if args.command == "staff":
        return run_staff(args, settings)
    if args.command == "privacy":
        return run_privacy(args, settings)
    if args.command == "audit":
        return run_audit(args, settings)
    return _serve(settings)


def _transcribe(settings: Settings, files: list[Path], as_json: bool, kind: str = "decision") -> int:
    import json

    from voicebot.asr.loader import load_engine
    from voicebot.flowrun import load_settings_flow, vocabularies
    from voicebot.transcribe import segment_json, transcribe_file

    try:
        if kind == "decision":
            flow = load_settings_flow(settings)
            engine = load_engine(settings.model or None, vocabularies(settings, flow)[settings.language])
        else:
            from voicebot.transcript.offline import offline_engine

            engine = offline_engine(settings.transcript_engine, settings.transcript_model,
                                    settings.language)
    except ConfigError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    print(f"engine: {engine.description}", file=sys.stderr)
    failed = 0
    for path in files:
        try:
            segments = [segment_json(s) for s in transcribe_file(path, engine)]
        except (OSError, WavError) as exc:  # one bad file; the others are still transcribed
            failed += 1
            print(f"voicebot: {exc}", file=sys.stderr)
            if as_json:
                print(json.dumps({"file": str(path), "error": str(exc)}, ensure_ascii=False))
            continue
        if as_json:
            print(json.dumps({"file": str(path), "segments": segments}, ensure_ascii=False))
            continue
        print(f"== {path}")
        for seg in segments:
            print(f"  {seg['start']:6.2f}-{seg['end']:6.2f}s  conf {seg['confidence']:.2f}  {seg['text']}")
        if not segments:
            print("  (no speech)")
    return 1 if failed else 0


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser("replay", help="stream recordings to a running server like a gateway")
    replay.add_argument("paths", nargs="+", type=Path, help="WAV files or directories of them")
    replay.add_argument("--url", default="ws://127.0.0.1:8080",
                        help="server base URL (ws://host:port); the protocol picks the path")
    replay.add_argument("--protocol", choices=("twilio", "native"), default="native")
    replay.add_argument("--speed", type=_speed, default=1.0,
                        help="1 = real time, 4 = four times, max = no pacing")
    replay.add_argument("--manifest", type=Path, help="expected outcomes, DTMF, hang-ups (JSON)")
    replay.add_argument("--concurrency", type=int, default=1, help="calls at once")
    replay.add_argument("--arrival-gap", type=float, default=0.0, metavar="SECONDS",
                        help="start the calls this far apart (the fixture suite uses 1.5)")
    replay.add_argument("--json", action="store_true", help="JSON lines instead of a call log")
    replay.add_argument("--save-audio", type=Path, metavar="DIR", help="write the bot's audio as WAVs")
    replay.add_argument("--token", help="bearer token for the native protocol")
    replay.add_argument("--staff-token", help="staff API token: also report the free-form "
                        "transcripts' word error rate (VOICEBOT_TRANSCRIPT_ENGINE)")
    replay.add_argument("--language", choices=("en", "ko"),
                        help="only the manifest's fixtures for a bot in this language")


def _speed(value: str) -> float:
    """`max` (no pacing, 0) or a positive factor of real time."""
    if value == "max":
        return 0.0
    try:
        factor = float(value)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a positive number (1 = real time) or max")
    return factor


def _replay(args: argparse.Namespace) -> int:
    from voicebot.audio.wav import write_wav
    from voicebot.replay.client import ReplayOptions
    from voicebot.replay.report import call_log, json_line, progress_line, summary_table
    from voicebot.replay.suite import CaseResult, load_cases, run_cases

    speed = args.speed
    cases = load_cases(args.paths, args.manifest)
    if args.language:
        cases = [c for c in cases if c.language in ("", args.language)]
    if not cases:
        print("voicebot replay: no WAV files found", file=sys.stderr)
        return 2
    path = "/twilio/media" if args.protocol == "twilio" else "/v1/stream"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    base = ReplayOptions(protocol=args.protocol, speed=speed, headers=headers,  # Twilio signs with:
                         twilio_auth_token=os.environ.get("VOICEBOT_TWILIO_AUTH_TOKEN", ""),
                         public_url=os.environ.get("VOICEBOT_PUBLIC_URL", ""))
    many = len(cases) > 1
    finished: list[CaseResult] = []

    def on_done(done: CaseResult) -> None:
        finished.append(done)
        if many:  # on stderr, so stdout stays a clean table or JSON lines
            line = progress_line(len(finished), len(cases), done)
            if sys.stderr.isatty():  # one bar redrawn in place
                last = len(finished) == len(cases)
                print(f"\r{line}\x1b[K", end="\n" if last else "", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)
        if args.json:
            print(json_line(done, speed), flush=True)
        elif not many:
            print(call_log(done, speed), flush=True)
        if args.save_audio and done.result is not None:
            args.save_audio.mkdir(parents=True, exist_ok=True)
            rate = 8000 if args.protocol == "twilio" else base.sample_rate
            write_wav(args.save_audio / f"{done.case.path.stem}.bot.wav", done.result.audio, rate)

    results = asyncio.run(run_cases(cases, args.url.rstrip("/") + path, base,
                                    args.concurrency, on_done, args.arrival_gap))
    if many and not args.json:
        print(summary_table(results, speed))
    if args.staff_token:
        from voicebot.transcript.replay_wer import free_form_wer, report

        http_base = args.url.rstrip("/").replace("ws://", "http://").replace("wss://", "https://")
        print(report(asyncio.run(free_form_wer(http_base, args.staff_token, results))))
    failed = [r for r in results if r.passed is False or r.result is None]
    return 1 if failed else 0


def _add_models(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="list, download and check Vosk speech models")
    models.add_argument("--dir", type=Path, default=Path("models"), help="where models live")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="known models and which are installed")
    fetch = actions.add_parser("fetch", help="download, verify and unpack a model")
    fetch.add_argument("name", help="a name from `voicebot models list`, or a zip URL")
    fetch.add_argument("--sha256", help="expected sha256 of the archive (overrides the catalog)")
    fetch.add_argument("--base-url", help="mirror to download from instead of the catalog URL")
    verify = actions.add_parser("verify", help="check a model directory has what Vosk needs")
    verify.add_argument("path", type=Path)


def _models(args: argparse.Namespace) -> int:
    from voicebot.asr import models as m
    from voicebot.transcript.catalog import fetch_whisper, known_models, whisper_rows

    if args.action == "list":
        rows = m.list_rows(args.dir) + whisper_rows(args.dir)
        cols = ("name", "language", "size", "sha256", "installed", "path")
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        print("  ".join(c.ljust(widths[c]) for c in cols))
        for row in rows:
            print("  ".join(row[c].ljust(widths[c]) for c in cols))
        return 0
    if args.action == "verify":
        problems = m.verify_model(args.path)
        for problem in problems:
            print(f"{args.path}: {problem}", file=sys.stderr)
        if not problems:
            print(f"{args.path}: OK")
        return 1 if problems else 0
    try:
        if args.name in known_models():  # the free-form engines and the sentence encoder
            path = fetch_whisper(args.name, args.dir, base_url=args.base_url,
                                 progress=_progress_bar())
        else:
            path = m.fetch_model(args.name, args.dir, sha256=args.sha256, base_url=args.base_url,
                                 progress=_progress_bar())
    except m.ModelError as exc:
        print(f"\nvoicebot models fetch: {exc}", file=sys.stderr)
        return 1
    print(f"\ninstalled {path}  (start with: voicebot serve --model {path})")
    return 0


def _progress_bar() -> Callable[[int, int | None], None]:
    def show(done: int, total: int | None) -> None:
        if total:
            filled = int(30 * done / total)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done / 1e6:7.1f}/{total / 1e6:.1f} MB",
                  end="", file=sys.stderr, flush=True)
        else:
            print(f"\r{done / 1e6:7.1f} MB", end="", file=sys.stderr, flush=True)

    return show


def _serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voicebot.app import STARTUP, create_app
    from voicebot.drain import stop_serving
    from voicebot.tls import server_ssl_context

    _warn_about_open_ingress(settings)
    try:
        tls = server_ssl_context(settings)
        app = create_app(settings)
    except ConfigError as exc:  # e.g. a bad flow or experiments file, an unreadable key file
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    failure: list[BaseException] = []

    async def watch_startup(app: web.Application) -> None:
        def done(task: asyncio.Task[None]) -> None:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                failure.append(error)
                log.critical("start-up failed: %s", error)
                os.kill(os.getpid(), signal.SIGTERM)
            elif not task.cancelled():
                log.info("ready: answering calls on %s://%s:%d", "https" if tls else "http",
                         settings.host, settings.port)

        app[STARTUP].add_done_callback(done)

    async def stop_on_signals(app: web.Application) -> None:  # first: a drain may take SIGTERM over
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop_serving)

    app.on_startup.insert(0, stop_on_signals)
    app.on_startup.append(watch_startup)
    log.info("listening on %s://%s:%d (Twilio webhook: POST /twilio/voice, native: WS /v1/stream)",
             "https" if tls else "http", settings.host, settings.port)
    # SIGTERM/SIGINT: stop listening, hand every call to a human (app.py drain),
    # flush the records, exit 0; with VOICEBOT_DRAIN_S, SIGTERM first lets the
    # calls finish while /healthz says 503 (voicebot/drain.py). The timeout only bounds sockets still open after that.
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, ssl_context=tls,
                    shutdown_timeout=settings.shutdown_grace_s + 5, handle_signals=False,
                    reuse_port=bool(settings.reuse_port) or None)
    except ConfigError as exc:  # e.g. stored data sealed under a key not configured
        print(f"voicebot: refusing to start: {exc}", file=sys.stderr)
        return 2
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
