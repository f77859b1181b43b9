"""Who is asking, and may they: passwords, tokens, login sessions and roles.

- Passwords: scrypt (RFC 7914) with a random salt, run off the event loop.
- API tokens and login sessions: 256-bit random values; only their SHA-256
  is stored. A client sends `Authorization: Bearer <token>`; the desk page
  gets an HttpOnly, SameSite=Strict cookie instead.
- `VOICEBOT_STAFF_TOKEN` stays a bootstrap admin token, so a fresh install can
  create its first users over the API (or with `voicebot staff add-user`).
- Refusals say nothing about why beyond 401 (who are you?) or 403 (not
  allowed): no hint whether a user, token or call exists.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from aiohttp import web

from voicebot.auth import bearer_matches
from voicebot.storage.staff import ROLES, StaffStore

SESSION_COOKIE = "voicebot_desk"
SESSION_SECONDS = 12 * 3600  # one working shift
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB, tens of ms per check
BOOTSTRAP = "bootstrap-admin"
CLI = "cli"  # the audit log's name for `voicebot staff` commands
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
RESERVED_NAMES = (BOOTSTRAP, CLI)  # audit entries must not be mistaken for a user's


def user_name_problem(name: str) -> str:
    """"" for a name a new user may have, else why not."""
    if not NAME.fullmatch(name):
        return "name: 1-64 letters, digits or . _ @ -"
    if name.lower() in RESERVED_NAMES:
        return f"name: {name!r} is reserved for the audit log"
    return ""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # api | session | bootstrap

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(_unb64(digest)))
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(digest))


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so both paths cost the same."""
    return hash_password(secrets.token_hex(8))


async def verify_login(store: StaffStore, name: str, password: str) -> Principal | None:
    user = await store.user(name)
    real = user is not None and bool(user.password_hash) and not user.disabled
    stored = user.password_hash if real and user is not None else None
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, lambda: check_password(password, stored or _dummy_hash()))
    if not ok or not real or user is None:
        return None
    return Principal(user.name, user.role, "session")


def new_token() -> tuple[str, str]:
    """A fresh secret token and the hash that is stored for it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, store: StaffStore, bootstrap_token: str) -> None:
        self.store = store
        self.bootstrap_token = bootstrap_token

    async def principal(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization")
        if header is not None:
            if self.bootstrap_token and bearer_matches(header, self.bootstrap_token):
                return Principal(BOOTSTRAP, "admin", "bootstrap")
            scheme, _, token = header.partition(" ")
            if scheme != "Bearer" or not token:
                return None
            found = await self.store.user_for_token(token_hash(token))
            return Principal(found[0].name, found[0].role, "api") if found else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        found = await self.store.user_for_token(token_hash(cookie))
        if found is None or found[1] != "session":
            return None
        if request.method not in ("GET", "HEAD") and not _same_origin_json(request):
            return None  # cookie-borne writes must come from our own page (CSRF)
        return Principal(found[0].name, found[0].role, "session")

    async def require(self, request: web.Request, role: str) -> Principal:
        who = await self.principal(request)
        if who is None:
            raise web.HTTPUnauthorized(text="authentication required",
                                       headers={"WWW-Authenticate": "Bearer"})
        if not who.at_least(role):
            raise web.HTTPForbidden(text="forbidden")
        return who


def _same_origin_json(request: web.Request) -> bool:
    """A cross-site form cannot send JSON without a CORS preflight we never grant."""
    return request.content_type == "application/json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)
