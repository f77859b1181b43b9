"""Staff API for accounts: log in/out, who am I, and the admin's users, tokens,
audit log, settings and CRM webhook deliveries."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from pathlib import Path

from aiohttp import web

from voicebot.staff.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    hash_password,
    new_token,
    token_hash,
    user_name_problem,
    verify_login,
)
from voicebot.staff.routes import bad_request, json_body, json_response
from voicebot.staff.service import StaffDesk
from voicebot.staff.throttle import client_address, forwarded_https, parse_proxies
from voicebot.storage.backends import display
from voicebot.storage.staff import ROLES

MIN_PASSWORD = 10
MAX_TOKEN_ID = 2**63 - 1  # SQLite's largest integer
STATIC = Path(__file__).parent / "static"
# Settings an admin may see; secrets only say whether they are set.
SECRET_SETTINGS = ("twilio_auth_token", "stream_token", "staff_token", "crm_webhook_secret",
                   "secret_key", "previous_secret_key", "pseudonym_key", "lookup_secret")
URL_SETTINGS = ("db", "redis_url")  # shown without the password they may carry


class AdminRoutes:
    def __init__(self, desk: StaffDesk) -> None:
        self.d = desk
        self._proxies = parse_proxies(desk.settings.trusted_proxies)

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
        # the security headers (CSP, frames) go on every response: security_headers.py
        return web.FileResponse(STATIC / "desk.html", headers={"Cache-Control": "no-store"})

    async def login(self, request: web.Request) -> web.Response:
        source = client_address(request, self._proxies)
        wait = await self.d.throttle.retry_after(source)
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text=json.dumps({"error": "too many failed log-ins from this address; "
                                          f"try again in {math.ceil(wait)} s"}),
                content_type="application/json", headers={"Retry-After": str(math.ceil(wait))})
        body = await json_body(request)
        name, password = str(body.get("name", "")), str(body.get("password", ""))
        who = await verify_login(self.d.staff, name, password) if name and password else None
        if who is None:
            await self.d.throttle.failed(source)
            raise web.HTTPUnauthorized(text='{"error": "wrong name or password"}',
                                       content_type="application/json")
        token, hashed = new_token()
        await self.d.staff.add_credential(hashed, who.name, "session",
                                          expires_at=time.time() + SESSION_SECONDS)
        await self.d.staff.audit(who.name, who.role, "login")
        response = json_response({"name": who.name, "role": who.role})
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True,
                            samesite="Strict", path="/", secure=self._secure(request))
        return response

    def _secure(self, request: web.Request) -> bool:
        """Behind the TLS proxy the README recommends, the request itself is plain
        http: the public URL (or the trusted proxy's X-Forwarded-Proto) says https."""
        return (request.secure or self.d.settings.public_url.lower().startswith("https://")
                or forwarded_https(request, self._proxies))

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
        problem = user_name_problem(name)
        if problem:
            raise bad_request(problem)
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
        text = request.match_info["id"]
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_TOKEN_ID:
            raise bad_request("token id must be a whole number as listed by GET /api/staff/tokens")
        token_id = int(text)
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
        for key in URL_SETTINGS:
            values[key] = display(values[key])
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
