"""Per-call media-stream tokens: binds each `WS /twilio/media` stream to the
signed `/twilio/voice` webhook that started it.

The X-Twilio-Signature of the WebSocket upgrade covers only the constant URL,
so one captured header would open any number of streams claiming any callSid
and caller. The TwiML therefore carries, as a `<Parameter name="token">` of
its `<Stream>` (Twilio does not allow a query string there), a token that is
an HMAC over the call's CallSid, its caller and an expiry. The `start`
message must present it once, within `TOKEN_TTL_S`, with the same CallSid.

The key is derived from the Twilio auth token, so every worker process
agrees; tokens are only required when that token is set (without it no Twilio
request is authenticated at all, and anyone could fetch a token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from voicebot.errors import ProtocolError

TOKEN_TTL_S = 60.0  # Twilio opens the stream within a second or two of the TwiML
PARAMETER = "token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class StreamTokens:
    def __init__(self, auth_token: str, ttl_s: float = TOKEN_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(auth_token.encode(), b"voicebot media-stream token v1",
                             hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._clock = clock
        self._used: dict[str, float] = {}  # nonce -> expiry, until it expires

    def _mac(self, call_sid: str, caller: str, expires: int, nonce: str) -> str:
        message = json.dumps([call_sid, caller, expires, nonce]).encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def issue(self, call_sid: str, caller: str) -> str:
        expires = int(self._clock() + self.ttl_s)
        nonce = secrets.token_urlsafe(12)
        return f"{expires}.{nonce}.{self._mac(call_sid, caller, expires, nonce)}"

    def redeem(self, token: str | None, call_sid: str, caller: str) -> None:
        """Accept `token` once for this call, or raise ProtocolError (close 1008)."""
        if not token:
            raise ProtocolError("start: missing stream token (customParameters.token)")
        expires_text, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12 or not nonce or not mac:
            raise ProtocolError("start: malformed stream token")
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(call_sid, caller, expires, nonce)):
            raise ProtocolError("start: stream token was not issued for this call")
        now = self._clock()
        if now >= expires:
            raise ProtocolError("start: stream token has expired")
        self._used = {n: e for n, e in self._used.items() if e > now}
        if nonce in self._used:
            raise ProtocolError("start: stream token was already used")
        self._used[nonce] = expires
