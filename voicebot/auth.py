"""Shared-secret checks used at more than one edge (constant-time compares)."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the Authorization header is exactly `Bearer <token>`."""
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())
