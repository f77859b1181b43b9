"""A flow's lookup node: one signed JSON POST to the deployment's backend.

The body is `{"call_id", "language", "node", "slots": {...}}`, signed like the
CRM webhook (`X-Voicebot-Timestamp`, `X-Voicebot-Signature: sha256=<hex>` of
`<timestamp>.<body>` under VOICEBOT_LOOKUP_SECRET). The backend answers 200
with a JSON object whose fields the node's prompt may name ("Your order
{order_number} {status}"). Anything else — a timeout, a refused connection,
another status, a body that is not a JSON object — is a failure, which the
policy sends down the node's error edge or to a person.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from voicebot.auth import sign
from voicebot.dialog.messages import Lookup, LookupDone

MAX_ANSWER_BYTES = 64 * 1024


class HttpLookups:
    """The LookupClient the server uses: one shared aiohttp session, signed requests."""

    def __init__(self, http: aiohttp.ClientSession, secret: str) -> None:
        self.http, self.secret = http, secret

    async def run(self, action: Lookup, context: dict[str, Any]) -> LookupDone:
        return await run_lookup(self.http, action, self.secret, context)


async def run_lookup(http: aiohttp.ClientSession, action: Lookup, secret: str,
                     context: dict[str, Any]) -> LookupDone:
    body = json.dumps({**context, "slots": action.payload}, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Voicebot-Timestamp": timestamp}
    if secret:
        headers["X-Voicebot-Signature"] = sign(secret, timestamp, body)
    try:
        async with http.post(action.url, data=body, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=action.timeout_s)) as response:
            if response.status != 200:
                return LookupDone(False, detail=f"backend answered HTTP {response.status}")
            raw = await response.content.read(MAX_ANSWER_BYTES + 1)
    except TimeoutError:
        return LookupDone(False, detail=f"backend gave no answer within {action.timeout_s} s")
    except aiohttp.ClientError as exc:
        return LookupDone(False, detail=f"backend unreachable: {type(exc).__name__}")
    if len(raw) > MAX_ANSWER_BYTES:
        return LookupDone(False, detail="backend answer too large")
    try:
        data = json.loads(raw)
    except ValueError:
        return LookupDone(False, detail="backend answer is not JSON")
    if not isinstance(data, dict):
        return LookupDone(False, detail="backend answer is not a JSON object")
    return LookupDone(True, {k: v for k, v in data.items() if isinstance(v, str | int | float)})
