"""The stores over the configured database, for commands run from the shell
(`voicebot privacy ...`, `voicebot staff erase-caller`)."""

from __future__ import annotations

import sys
from typing import Any

from voicebot.config import Settings


async def erase_from_shell(settings: Settings, caller: str) -> int:
    from voicebot.staff.privacy import erase_caller

    if not caller.strip():
        raise ValueError("give the caller's number")
    async with Stores(settings) as s:
        async def forget(number: str) -> None:  # a running server's memory within REFRESH_S
            await s.opt_outs.remove(s.privacy.pseudonym(number))
        ids = await erase_caller(s.calls, s.desk, caller.strip(), forget, s.recordings)
        await s.staff.audit("cli", "admin", "erase_caller", detail=f"{len(ids)} calls")
    print(f"erased {len(ids)} calls", file=sys.stderr)
    return 0


class Stores:
    """The call store (sealed), the desk and the staff store over the configured file."""

    def __init__(self, settings: Settings, privacy: Any = None) -> None:
        from voicebot.privacy import privacy_for
        from voicebot.storage.callstore import SqlCallStore
        from voicebot.storage.desk import DeskStore
        from voicebot.storage.optout import OptOutStore
        from voicebot.storage.recordings import RecordingStore
        from voicebot.storage.sealed import SealedCallStore
        from voicebot.storage.staff import StaffStore

        self.privacy = privacy or privacy_for(settings)
        self.backend = SqlCallStore(settings.db)
        self.calls = SealedCallStore(self.backend, self.privacy)
        self.desk = DeskStore(settings.db, self.privacy)
        self.staff = StaffStore(settings.db)
        self.opt_outs = OptOutStore(settings.db)
        self.recordings = RecordingStore(settings.recordings_path, self.privacy)

    async def __aenter__(self) -> Stores:
        await self.calls.open()  # first: it makes the calls table and checks the key
        await self.desk.open()
        await self.staff.open()
        await self.opt_outs.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for store in (self.opt_outs, self.staff, self.desk, self.calls):
            await store.close()
