"""Pieces both WebSocket adapters share: the message loop with its limits,
closing with a reason, the call task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from voicebot.call.registry import CallRegistry
from voicebot.call.session import CallSession
from voicebot.errors import ProtocolError

log = logging.getLogger(__name__)

GOING_AWAY = WSCloseCode.GOING_AWAY
TRY_AGAIN_LATER = WSCloseCode.TRY_AGAIN_LATER
MESSAGE_TOO_BIG = WSCloseCode.MESSAGE_TOO_BIG
_CLOSING = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


async def close_with_error(ws: web.WebSocketResponse, error: ProtocolError,
                           registry: CallRegistry | None = None) -> None:
    log.warning("closing a call's socket: %s", error.reason)
    if registry is not None:
        registry.metrics.protocol_errors.labels(str(error.code)).inc()
        registry.metrics.errors.labels("protocol").inc()
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
    """Upgrade; `False` (socket closed with 1013) while the engine is still loading.

    The reader accepts up to twice the limit so that `messages` can refuse an
    oversized message with a reason; beyond that aiohttp closes with a bare 1009."""
    ws = web.WebSocketResponse(max_msg_size=2 * max_message_bytes + 1, heartbeat=30)
    await ws.prepare(request)
    if not registry.ready:
        await ws.close(code=TRY_AGAIN_LATER, message=b"starting up")
        return ws, False
    return ws, True


async def messages(ws: web.WebSocketResponse, max_bytes: int, start_timeout: float,
                   started: Callable[[], bool]) -> AsyncIterator[WSMessage]:
    """TEXT and BINARY messages until the peer closes. Raises ProtocolError for a
    message over `max_bytes`, a transport-level error, or a socket that has not
    started a call within `start_timeout` seconds (once started, the session's
    own idle timeout applies)."""
    deadline = asyncio.get_running_loop().time() + start_timeout
    while True:
        timeout = None if started() else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            raise ProtocolError(f"no call started within {start_timeout:g} s") from None
        if msg.type in _CLOSING:
            return
        if msg.type is WSMsgType.ERROR:
            code = getattr(msg.data, "code", 1011)
            raise ProtocolError(f"bad WebSocket frame: {msg.data}", code)
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and len(msg.data) > max_bytes:
            raise ProtocolError(f"message of {len(msg.data)} bytes is over the limit of "
                                f"{max_bytes}", MESSAGE_TOO_BIG)
        yield msg


async def id_in_use(registry: CallRegistry, call_or_gateway_id: str) -> bool:
    """Whether a live or stored call already has this id (as its own or its
    gateway's): a second call under it would append to, overwrite or hide
    behind the first one's record."""
    services = registry.services
    assert services is not None
    try:
        if await services.store.get(call_or_gateway_id) is not None:
            return True
    except Exception:  # noqa: BLE001 - store down: the journal keeps records apart by time
        pass
    # after the await: the caller starts its session before anything else can run
    return registry.has_call(call_or_gateway_id)


def start_call(registry: CallRegistry, session: CallSession) -> asyncio.Task[None]:
    return asyncio.create_task(registry.run(session), name=f"call-{session.recorder.call_id}")
