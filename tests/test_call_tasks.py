"""CallTasks: every task of a call is awaited at its end, and failures are logged
by type only (a hang-up under a prompt is not an error)."""

from __future__ import annotations

import asyncio
import logging

from voicebot.call.tasks import CallTasks


async def fail(exc: Exception) -> None:
    raise exc


async def test_failures_are_logged_by_type_and_a_closed_line_is_not_an_error(caplog):
    tasks = CallTasks("call 'c1'")
    caplog.set_level(logging.INFO, logger="voicebot.call.tasks")
    broken = tasks.spawn(fail(ValueError("caller said 4111 1111")), "recognise")
    gone = tasks.spawn(fail(ConnectionResetError("socket closed")), "prompt-menu")
    await asyncio.gather(broken, gone, return_exceptions=True)
    records = {r.getMessage(): r.levelname for r in caplog.records}
    assert records == {"call 'c1': task recognise failed: ValueError": "ERROR",
                       "call 'c1': task prompt-menu ended with the connection (ConnectionResetError)": "INFO"}
    assert "4111" not in caplog.text


async def test_close_cancels_and_awaits_every_task_and_starts_no_more():
    tasks = CallTasks("call 'c2'")
    forever = tasks.spawn(asyncio.Event().wait(), "timer")
    await tasks.close()
    assert forever is not None and forever.cancelled() and not tasks.running
    late = asyncio.sleep(0)
    assert tasks.spawn(late, "late-mark") is None
