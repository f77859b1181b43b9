"""Headers every response carries, whatever route (or static file, or error)
produced it: the desk page must not load in another site's frame at any of
its URLs, browsers must not guess content types, and the server does not
advertise its software versions."""

from __future__ import annotations

from aiohttp import web

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Server": "voicebot",  # not aiohttp's "Python/3.x aiohttp/3.y"
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers[name] = value
