"""Erasing what we hold about callers: on request (admin only), and by age.

`POST /api/privacy/erase {"caller": "+15550123"}` deletes every call from that
number: the call records and everything recorded in them (utterances, prompts,
summary) and the desk's rows about them (transfers, feedback, CRM delivery
log). The audit log keeps that an erasure happened and how many calls it
removed, never the number. Open desks drop the calls from their queues.

With `VOICEBOT_RETENTION_DAYS` set, calls older than that are erased the same
way, at start-up and then every hour. Call recordings go with their calls, and
by their own age (`VOICEBOT_RECORDING_RETENTION_DAYS`) in the same sweep.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from voicebot.errors import StoreUnavailable
from voicebot.staff.optout import OptOuts
from voicebot.staff.routes import bad_request, json_body, json_response
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.storage.desk import DeskStore
from voicebot.storage.recordings import RecordingStore

log = logging.getLogger(__name__)


async def erase_caller(calls: CallStore, desk: DeskStore, caller: str,
                       forget: Callable[[str], Awaitable[None]] | None = None,
                       recordings: RecordingStore | None = None) -> list[str]:
    """Delete a caller's calls, the desk's rows and recordings of them and
    (`forget`) their opt-out; the ids erased."""
    ids = await calls.erase_caller(caller)
    await desk.erase_calls(ids)
    if recordings is not None:
        await recordings.erase(ids)
    if forget is not None:
        await forget(caller)
    return ids


async def announce_erased(desk: StaffDesk, ids: list[str], user: str, role: str, action: str) -> None:
    """Audit an erasure by its count (never whose calls) and drop the calls from open desks."""
    await desk.staff.audit(user, role, action, detail=f"{len(ids)} calls")
    for call_id in ids:
        desk.publish_update(call_id, "erased")


async def export_caller(calls: CallStore, desk: DeskStore, caller: str, opted_out: bool = False,
                        recordings: RecordingStore | None = None) -> dict[str, Any]:
    """Everything held about a caller, as portable JSON: each call with its transcript,
    prompts, outcome, disclosure record and recording (a base64 WAV, decrypted), the
    desk's rows about those calls, and whether they opted out of the automated assistant."""
    records = await calls.calls_of_caller(caller)
    ids = [r.call_id for r in records]
    return {
        "format": "voicebot.caller-export.v1", "caller": caller,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "calls": [{**r.to_json(), "disclosure": {
            "text": r.disclosure_text, "started_at": r.disclosure_started_at,
            "played_at": r.disclosure_played_at, "confirmed_by": r.disclosure_confirmed_by,
        }, "recording": await _recording_json(recordings, r.call_id)} for r in records],
        "desk": await desk.rows_for_calls(ids),
        "opted_out_of_assistant": opted_out,
    }


async def _recording_json(recordings: RecordingStore | None, call_id: str) -> dict[str, Any] | None:
    recording = await recordings.read(call_id) if recordings is not None else None
    if recording is None:
        return None
    return {"format": "audio/wav", "sample_rate": recording.sample_rate,
            "seconds": round(recording.seconds, 2),
            "wav_base64": base64.b64encode(recording.wav()).decode()}


RETENTION_SWEEP_S = 3600.0


@dataclass(frozen=True)
class Retention:
    days: float = 0.0  # calls; 0 = kept
    recordings: RecordingStore | None = None
    recording_days: float = 0.0  # recordings; 0 = as long as their call

    @property
    def active(self) -> bool:
        return bool(self.days or (self.recordings is not None and self.recording_days))


async def erase_expired(calls: CallStore, desk: DeskStore, rules: Retention) -> tuple[list[str], int]:
    """The ids of the calls erased, and how many recordings were erased by their own age."""
    ids = await calls.erase_started_before(time.time() - rules.days * 86400) if rules.days else []
    await desk.erase_calls(ids)
    aged = 0
    if rules.recordings is not None:
        await rules.recordings.erase(ids)
        if rules.recording_days:
            aged = len(await rules.recordings.erase_started_before(time.time() - rules.recording_days * 86400))
    return ids, aged


async def keep_retention(calls: CallStore, desk: StaffDesk, rules: Retention) -> None:
    """Runs for the life of the server when a retention period is set."""
    while True:
        try:
            ids, aged = await erase_expired(calls, desk.desk, rules)
            if ids:
                await announce_erased(desk, ids, "retention", "system", "erase_expired")
                log.info("retention: erased %d calls older than %g days", len(ids), rules.days)
            if aged:
                await desk.staff.audit("retention", "system", "erase_expired_recordings",
                                       detail=f"{aged} recordings")
                log.info("retention: erased %d recordings older than %g days", aged, rules.recording_days)
        except StoreUnavailable:
            pass  # the database is down or catching up: next time
        except Exception:  # a failed sweep must not end retention for the server's life
            log.exception("retention sweep failed; trying again in %g s", RETENTION_SWEEP_S)
        await asyncio.sleep(RETENTION_SWEEP_S)


class PrivacyRoutes:
    def __init__(self, desk: StaffDesk, calls: CallStore, opt_outs: OptOuts,
                 recordings: RecordingStore | None = None) -> None:
        self.d = desk
        self.calls = calls
        self.opt_outs = opt_outs
        self.recordings = recordings

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/privacy/erase", self.erase)
        router.add_post("/api/privacy/export", self.export)
        router.add_post("/api/privacy/opt-out", self.opt_out)

    async def opt_out(self, request: web.Request) -> web.Response:
        """`{"caller"}`: is it opted out; with `"opted_out": true|false`, set it."""
        who = await self.d.auth.require(request, "admin")
        body = await json_body(request)
        caller = self._caller(body)
        wanted = body.get("opted_out")
        if wanted is not None and not isinstance(wanted, bool):
            raise bad_request("opted_out must be true or false")
        changed = False
        if wanted is not None:
            changed = await self.opt_outs.set(caller, wanted, who.name, who.role)
        return json_response({"opted_out": await self.opt_outs.stored(caller), "changed": changed})

    @staticmethod
    def _caller(body: dict[str, Any]) -> str:
        caller = body.get("caller")
        if not isinstance(caller, str) or not caller.strip() or len(caller) > 256:
            raise bad_request("caller must be the caller's number, as a string")
        return caller.strip()

    async def export(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        caller = self._caller(await json_body(request))
        try:
            data = await export_caller(self.calls, self.d.desk, caller,
                                       await self.opt_outs.stored(caller), self.recordings)
        except StoreUnavailable:
            return json_response({"error": "the call database is unavailable or catching up; "
                                           "try again"}, status=503)
        await self.d.staff.audit(who.name, who.role, "export_caller",
                                 detail=f"{len(data['calls'])} calls")
        return json_response(data)

    async def erase(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        caller = self._caller(await json_body(request))
        try:
            ids = await erase_caller(self.calls, self.d.desk, caller, self.opt_outs.forget,
                                     self.recordings)
        except StoreUnavailable:
            return json_response({"error": "the call database is unavailable or catching up; "
                                           "nothing was erased, try again"}, status=503)
        await announce_erased(self.d, ids, who.name, who.role, "erase_caller")
        log.info("erased %d calls at a caller's request", len(ids))
        return json_response({"erased_calls": len(ids)})
