"""Pieces both WebSocket adapters share: closing with a reason, the call task."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, web

from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallSession
from voicebot.errors import ProtocolError

log = logging.getLogger(__name__)


async def close_with_error(ws: web.WebSocketResponse, error: ProtocolError) -> None:
    log.warning("closing a call's socket: %s", error.reason)
    await ws.close(code=error.code, message=error.reason[:120].encode())


async def finish_call(registry: CallRegistry, session: CallSession | None,
                      task: asyncio.Task[None] | None) -> None:
    """The socket is gone: tell the session (if still talking) and wait for its record."""
    if session is None or task is None:
        return
    session.on_hangup()
    await asyncio.shield(task)


async def open_socket(
    request: web.Request, registry: CallRegistry, max_message_bytes: int
) -> tuple[web.WebSocketResponse, bool]:
    """Upgrade; `False` (socket closed with 1013) while the engine is still loading."""
    ws = web.WebSocketResponse(max_msg_size=max_message_bytes, heartbeat=30)
    await ws.prepare(request)
    if not registry.ready:
        await ws.close(code=TRY_AGAIN_LATER, message=b"starting up")
        return ws, False
    return ws, True


def start_call(registry: CallRegistry, session: CallSession) -> asyncio.Task[None]:
    return asyncio.create_task(registry.run(session), name=f"call-{session.recorder.call_id}")


GOING_AWAY = WSCloseCode.GOING_AWAY
TRY_AGAIN_LATER = WSCloseCode.TRY_AGAIN_LATER
