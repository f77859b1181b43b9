"""Staff read API (bearer token for now; roles arrive with the staff desk)."""

from __future__ import annotations

from aiohttp import web

from voicebot.auth import bearer_matches
from voicebot.config import Settings
from voicebot.storage.base import CallStore


class CallsApi:
    def __init__(self, settings: Settings, store: CallStore) -> None:
        self.settings = settings
        self.store = store

    def _check(self, request: web.Request) -> None:
        token = self.settings.staff_token
        if not token:
            raise web.HTTPForbidden(text="staff API disabled: set VOICEBOT_STAFF_TOKEN")
        if not bearer_matches(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token",
                                       headers={"WWW-Authenticate": "Bearer"})

    async def get_call(self, request: web.Request) -> web.Response:
        self._check(request)
        record = await self.store.get(request.match_info["call_id"])
        if record is None:
            raise web.HTTPNotFound(text="no such call")
        return web.json_response(record.to_json(), dumps=_dumps)


def _dumps(obj: object) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)
