"""The live calls of this process and the shared services once they are ready."""

from __future__ import annotations

import asyncio
import uuid

from voicebot.call.media import MediaChannel
from voicebot.call.session import CallServices, CallSession
from voicebot.storage.base import CallRecord


class CallRegistry:
    def __init__(self) -> None:
        self.services: CallServices | None = None  # None until engine + prompts are ready
        self.sessions: dict[str, CallSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.services is not None

    def new_session(self, record: CallRecord, channel: MediaChannel) -> CallSession:
        if self.services is None:
            raise RuntimeError("services are not ready")
        if not record.call_id:
            record.call_id = uuid.uuid4().hex
        if record.call_id in self.sessions:
            raise KeyError(record.call_id)
        record.language = self.services.settings.language
        session = CallSession(record, channel, self.services)
        self.sessions[record.call_id] = session
        return session

    async def run(self, session: CallSession) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await session.run()
        finally:
            self.sessions.pop(session.recorder.call_id, None)

    async def hang_up_all(self) -> None:
        for session in list(self.sessions.values()):
            session.on_hangup()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
