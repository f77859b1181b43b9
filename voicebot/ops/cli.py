"""`voicebot report [--since 7d] [--until now] [--format table|json|html] [--out FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.flowrun import load_settings_flow
from voicebot.ops.abtest import controls_of
from voicebot.ops.report import FORMATS, build_report, flow_understanding, parse_when, render
from voicebot.ops.wiring import sealed_source
from voicebot.privacy import privacy_for
from voicebot.storage.backends import display, is_server, unreachable


def add_report_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="KPIs and fairness across caller groups from stored calls")
    report.add_argument("--config", help="TOML settings file (for the database path)")
    report.add_argument("--since", default="7d", help="7d, 24h, 2026-12-01 (UTC) ... (default 7d)")
    report.add_argument("--until", default="", help="same forms (default: now)")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--out", type=Path, help="write here instead of standard output")
    report.add_argument("--min-group", type=int, default=5,
                        help="fewest calls a group needs to be flagged (default 5)")
    report.add_argument("--utc-offset", type=float, default=0.0,
                        help="hours added to UTC for the time-of-day groups (default 0)")


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    now = time.time()
    try:
        since = parse_when(args.since, now)
        until = parse_when(args.until, now) if args.until else now
    except ValueError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    if since >= until:
        print("voicebot: --since must be before --until", file=sys.stderr)
        return 2
    if args.min_group < 1:
        print("voicebot: --min-group must be at least 1", file=sys.stderr)
        return 2
    if not is_server(settings.db) and not Path(settings.db).exists():
        print(f"voicebot: no call database at {settings.db} (set db in --config or VOICEBOT_DB)",
              file=sys.stderr)
        return 2
    try:
        flow = load_settings_flow(settings)
    except ConfigError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(build_report(
            sealed_source(settings.db, privacy_for(settings)), since, until,
            threshold=settings.confidence_threshold, min_calls=args.min_group,
            utc_offset_h=args.utc_offset, controls=controls_of(settings, flow),
            intent_of=flow_understanding(flow)))
    except unreachable() as exc:
        print(f"voicebot: cannot reach the call database {display(settings.db)} "
              f"({type(exc).__name__})", file=sys.stderr)
        return 2
    text = render(report, args.format)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
