"""`voicebot audit disclosure [--since DATE]`: proof that every call heard the AI disclosure.

A call counts as disclosed when its disclosure finished playing and the gateway
confirmed it (its playout mark came back). A disclosure assumed played because
no mark came in time (`timer`) is not proof, so it is listed. Calls the caller
left during the disclosure, before the bot said or heard anything else, are
not counted (nobody talked to the machine), and neither are calls still in
progress. Exits 1 when the share is below 100 %, 0 otherwise.

With recording on (VOICEBOT_RECORDING=consent), it also counts the calls asked
for consent to record and their answers (given, refused, no answer, or left
before answering), and marks each listed call with its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.storage.backends import is_server


def add_audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="compliance reports from the stored calls")
    audit.add_argument("--config", help="TOML settings file")
    kinds = audit.add_subparsers(dest="report", required=True)
    disclosure = kinds.add_parser("disclosure", help="share of calls whose AI disclosure was "
                                  "played and confirmed; exits 1 below 100 %%")
    disclosure.add_argument("--since", type=_date, default=0.0,
                            help="only calls started on or after this date (YYYY-MM-DD, UTC)")


def _date(value: str) -> float:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give a date as YYYY-MM-DD") from None


@dataclass
class DisclosureReport:
    confirmed: int = 0
    left_during: int = 0
    in_progress: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    consent: dict[str, int] = field(default_factory=dict)  # recording consent answer -> calls

    @property
    def counted(self) -> int:
        return self.confirmed + len(self.missing)

    @property
    def share(self) -> float:
        return 100.0 * self.confirmed / self.counted if self.counted else 100.0


def disclosure_report(rows: list[dict[str, Any]]) -> DisclosureReport:
    report = DisclosureReport()
    for row in rows:
        if row["recording_consent"]:
            report.consent[row["recording_consent"]] = report.consent.get(row["recording_consent"], 0) + 1
        if row["disclosure_played_at"] is not None and row["disclosure_confirmed_by"] == "mark":
            report.confirmed += 1
        elif row["ended_at"] is None:
            report.in_progress += 1
        elif row["outcome"] == "abandoned" and not row["utterances"] and row["prompts"] <= 1:
            report.left_during += 1
        else:
            report.missing.append(row)
    return report


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    if settings.db != ":memory:" and not is_server(settings.db) and not Path(settings.db).exists():
        print(f"voicebot audit: no database at {settings.db}", file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_rows(settings, args.since))
    except ConfigError as exc:
        print(f"voicebot audit: {exc}", file=sys.stderr)
        return 2
    report = disclosure_report(rows)
    print(f"disclosure played and confirmed: {report.confirmed} of {report.counted} calls "
          f"({report.share:.1f} %)")
    print(f"not counted: {report.left_during} left during the disclosure, "
          f"{report.in_progress} in progress")
    if report.consent:
        c = report.consent
        print(f"recording consent asked on {sum(c.values())} calls: {c.get('given', 0)} given, "
              f"{c.get('refused', 0)} refused, {c.get('no_answer', 0)} no answer, "
              f"{c.get('asked', 0)} left before answering")
    for row in report.missing:
        started = datetime.fromtimestamp(row["started_at"] or 0, UTC).isoformat(timespec="seconds")
        played = "played" if row["disclosure_played_at"] is not None else "not played"
        how = row["disclosure_confirmed_by"] or "no confirmation"
        consent = f", recording consent {row['recording_consent']}" if row["recording_consent"] else ""
        print(f"  {row['call_id']}  {started}  {row['outcome'] or '-'}  {played}, {how}{consent}")
    return 0 if report.share >= 100.0 else 1


async def _rows(settings: Settings, since: float) -> list[dict[str, Any]]:
    from voicebot.storage.callstore import SqlCallStore
    from voicebot.storage.desk import DeskStore

    calls, desk = SqlCallStore(settings.db), DeskStore(settings.db)  # no personal columns read
    await calls.open()  # makes the tables of an empty database
    await desk.open()
    try:
        return await desk.disclosure_records(since)
    finally:
        await desk.close()
        await calls.close()
