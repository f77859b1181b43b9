"""Staff API for accounts: log in/out, who am I, and the admin's users, tokens,
audit log, settings and CRM webhook deliveries."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from voicebot.staff.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    hash_password,
    new_token,
    token_hash,
    verify_login,
)
from voicebot.staff.routes import bad_request, json_body, json_response
from voicebot.staff.service import StaffDesk
from voicebot.storage.staff import ROLES

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10
LOCKOUT_FAILURES, LOCKOUT_S = 5, 60.0  # per name: slows password guessing to a crawl
MAX_TRACKED_NAMES = 1024  # beyond this, failures older than LOCKOUT_S are forgotten
STATIC = Path(__file__).parent / "static"
# Settings an admin may see; secrets only say whether they are set.
SECRET_SETTINGS = ("twilio_auth_token", "stream_token", "staff_token", "crm_webhook_secret")


class LoginThrottle:
    """Log-in failures in a row per name: `limit` of them lock the name until
    `window_s` after the last. Guesses at made-up names must not grow the table
    without bound, so once it tracks more than `max_names`, failures older than
    the window (which no longer lock anything) are dropped."""

    def __init__(self, limit: int = LOCKOUT_FAILURES, window_s: float = LOCKOUT_S,
                 max_names: int = MAX_TRACKED_NAMES, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_names, self._clock = limit, window_s, max_names, clock
        self._failures: dict[str, tuple[int, float]] = {}  # name -> (failures in a row, last)

    def __len__(self) -> int:
        return len(self._failures)

    def locked(self, name: str) -> bool:
        failures, last = self._failures.get(name, (0, 0.0))
        return failures >= self.limit and self._clock() - last < self.window_s

    def failed(self, name: str) -> None:
        now = self._clock()
        failures, _ = self._failures.get(name, (0, 0.0))
        self._failures[name] = (failures + 1, now)  # once locked, each miss locks it again
        if len(self._failures) > self.max_names:
            self._failures = {n: f for n, f in self._failures.items() if now - f[1] < self.window_s}

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)


class AdminRoutes:
    def __init__(self, desk: StaffDesk) -> None:
        self.d = desk
        self._throttle = LoginThrottle()

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/desk", self.page)
        router.add_static("/desk/static", STATIC)
        router.add_post("/api/staff/login", self.login)
        router.add_post("/api/staff/logout", self.logout)
        router.add_get("/api/staff/me", self.me)
        router.add_get("/api/staff/users", self.users)
        router.add_post("/api/staff/users", self.add_user)
        router.add_patch("/api/staff/users/{name}", self.change_user)
        router.add_get("/api/staff/tokens", self.tokens)
        router.add_post("/api/staff/users/{name}/tokens", self.add_token)
        router.add_delete("/api/staff/tokens/{id}", self.revoke_token)
        router.add_get("/api/staff/audit", self.audit)
        router.add_get("/api/staff/settings", self.settings)
        router.add_get("/api/staff/webhook-deliveries", self.deliveries)

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "desk.html", headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "frame-ancestors 'none'"})

    async def login(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        name, password = str(body.get("name", "")), str(body.get("password", ""))
        locked = self._throttle.locked(name)
        who = None
        if name and password and not locked:
            who = await verify_login(self.d.staff, name, password)
        if who is None:
            if name and not locked:
                self._throttle.failed(name)
            raise web.HTTPUnauthorized(text='{"error": "wrong name or password"}',
                                       content_type="application/json")
        self._throttle.succeeded(name)
        token, hashed = new_token()
        await self.d.staff.add_credential(hashed, who.name, "session",
                                          expires_at=time.time() + SESSION_SECONDS)
        await self.d.staff.audit(who.name, who.role, "login")
        response = json_response({"name": who.name, "role": who.role})
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True,
                            samesite="Strict", path="/", secure=request.secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "agent")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await self.d.staff.revoke(token_hash=token_hash(cookie))
        response = json_response({"ok": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        return json_response({"name": who.name, "role": who.role, "via": who.via})

    async def users(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "admin")
        return json_response({"users": [u.to_json() for u in await self.d.staff.users()]})

    async def add_user(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        body = await json_body(request)
        name, role = str(body.get("name", "")), body.get("role")
        password = body.get("password")
        if not NAME.match(name):
            raise bad_request("name: 1-64 letters, digits or . _ @ -")
        if role not in ROLES:
            raise bad_request(f"role must be one of {', '.join(ROLES)}")
        hashed = await _hash(password) if password is not None else ""
        if await self.d.staff.user(name) is not None:
            return json_response({"error": "user exists"}, status=409)
        user = await self.d.staff.add_user(name, role, hashed)
        await self.d.staff.audit(who.name, who.role, "add_user", detail=f"{name} as {role}")
        return json_response({"user": user.to_json()}, status=201)

    async def change_user(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        body = await json_body(request)
        name = request.match_info["name"]
        role, disabled = body.get("role"), body.get("disabled")
        if role is not None and role not in ROLES:
            raise bad_request(f"role must be one of {', '.join(ROLES)}")
        if disabled is not None and not isinstance(disabled, bool):
            raise bad_request("disabled must be true or false")
        password = body.get("password")
        hashed = await _hash(password) if password is not None else None
        found = await self.d.staff.set_user(name, role=role, password_hash=hashed,
                                            disabled=disabled)
        if not found:
            return json_response({"error": "no such user"}, status=404)
        changed = ", ".join(k for k in ("role", "disabled", "password") if body.get(k) is not None)
        await self.d.staff.audit(who.name, who.role, "change_user", detail=f"{name}: {changed}")
        user = await self.d.staff.user(name)
        assert user is not None
        return json_response({"user": user.to_json()})

    async def tokens(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "admin")
        return json_response({"tokens": await self.d.staff.credentials()})

    async def add_token(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        name = request.match_info["name"]
        body = await json_body(request) if request.can_read_body else {}
        user = await self.d.staff.user(name)
        if user is None or user.disabled:
            return json_response({"error": "no such user"}, status=404)
        token, hashed = new_token()
        label = str(body.get("label", ""))[:100]
        token_id = await self.d.staff.add_credential(hashed, name, "api", label)
        await self.d.staff.audit(who.name, who.role, "add_token", detail=f"{name}: {label}")
        # the only time the token is shown: only its hash is kept
        return json_response({"id": token_id, "user": name, "token": token}, status=201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "admin")
        try:
            token_id = int(request.match_info["id"])
        except ValueError:
            raise bad_request("token id must be a number") from None
        if not await self.d.staff.revoke(credential_id=token_id):
            return json_response({"error": "no such token"}, status=404)
        await self.d.staff.audit(who.name, who.role, "revoke_token", detail=str(token_id))
        return json_response({"revoked": token_id})

    async def audit(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "admin")
        call_id = request.query.get("call_id", "")
        return json_response({"audit": await self.d.staff.audit_log(call_id)})

    async def settings(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "admin")
        values = dataclasses.asdict(self.d.settings)
        for key in SECRET_SETTINGS:
            values[key] = "(set)" if values.get(key) else ""
        return json_response({"settings": values})

    async def deliveries(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "admin")
        failed = request.query.get("failed", "1") != "0"
        return json_response({"enabled": self.d.webhook is not None,
                              "deliveries": await self.d.desk.deliveries(failed_only=failed)})


async def _hash(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise bad_request(f"password must be at least {MIN_PASSWORD} characters")
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
