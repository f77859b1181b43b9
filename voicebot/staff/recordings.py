"""`GET /api/calls/{id}/recording`: a call's recording, decrypted, as a WAV.

Supervisors and admins only (a desk agent gets 403, whatever call they hold);
every fetch is audited with the call id. 404 when the call or its recording
does not exist (recording off, no consent, erased or past its retention).
"""

from __future__ import annotations

from aiohttp import web

from voicebot.errors import StoreUnavailable
from voicebot.staff.routes import json_response, not_found
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallStore
from voicebot.storage.recordings import RecordingStore

ROLE = "supervisor"


class RecordingRoutes:
    def __init__(self, desk: StaffDesk, calls: CallStore, recordings: RecordingStore) -> None:
        self.d, self.calls, self.recordings = desk, calls, recordings

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/calls/{call_id}/recording", self.fetch)

    async def fetch(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, ROLE)
        try:
            record = await self.calls.get(request.match_info["call_id"])
        except StoreUnavailable:
            return json_response({"error": "the call database is unavailable; try again"}, status=503)
        recording = await self.recordings.read(record.call_id) if record is not None else None
        if record is None or recording is None:
            raise not_found()
        await self.d.staff.audit(who.name, who.role, "read_recording", record.call_id)
        return web.Response(body=recording.wav(), content_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{record.call_id}.wav"',
            "Cache-Control": "no-store"})
