"""Shared-secret checks used at more than one edge (constant-time compares)."""

from __future__ import annotations

import hashlib
import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the Authorization header is exactly `Bearer <token>`."""
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Voicebot-Signature` of an outgoing request (CRM webhook, flow lookups):
    HMAC-SHA256 of `<timestamp>.<body>`, so an old request cannot pass as new."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
