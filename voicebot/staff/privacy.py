"""A caller's request to erase what we hold about them (admin only).

`POST /api/privacy/erase {"caller": "+15550123"}` deletes every call from that
number: the call records and everything recorded in them (utterances, prompts,
summary) and the desk's rows about them (transfers, feedback, CRM delivery
log). The audit log keeps that an erasure happened and how many calls it
removed, never the number. Open desks drop the calls from their queues.
"""

from __future__ import annotations

import logging

from aiohttp import web

from voicebot.errors import StoreUnavailable
from voicebot.staff.routes import bad_request, json_body, json_response
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.storage.desk import DeskStore

log = logging.getLogger(__name__)


async def erase_caller(calls: CallStore, desk: DeskStore, caller: str) -> list[str]:
    """Delete a caller's calls and the desk's rows about them; the ids erased."""
    ids = await calls.erase_caller(caller)
    await desk.erase_calls(ids)
    return ids


class PrivacyRoutes:
    def __init__(self, desk: StaffDesk, calls: CallStore) -> None:
        self.d = desk
        self.calls = calls

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/privacy/erase", self.erase)

    async def erase(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        caller = (await json_body(request)).get("caller")
        if not isinstance(caller, str) or not caller.strip() or len(caller) > 256:
            raise bad_request("caller must be the caller's number, as a string")
        try:
            ids = await erase_caller(self.calls, self.d.desk, caller.strip())
        except StoreUnavailable:
            return json_response({"error": "the call database is unavailable or catching up; "
                                           "nothing was erased, try again"}, status=503)
        await self.d.staff.audit(who.name, who.role, "erase_caller", detail=f"{len(ids)} calls")
        for call_id in ids:
            self.d.publish_update(call_id, "erased")
        log.info("erased %d calls at a caller's request", len(ids))
        return json_response({"erased_calls": len(ids)})
