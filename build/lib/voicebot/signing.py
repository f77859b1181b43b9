"""X-Twilio-Signature: HMAC-SHA1 over the URL Twilio requested plus the sorted
POST parameters (each name immediately followed by its value), base64."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_twilio_signature(
    auth_token: str, signature: str | None, url: str, params: Mapping[str, str] | None = None
) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), signature)
