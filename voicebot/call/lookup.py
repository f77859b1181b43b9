"""The narrow interface a call uses to run a flow's lookup node, and a fake.

The call layer never speaks HTTP itself: the app gives it a LookupClient
(voicebot.http_lookup.HttpLookups, a signed JSON POST); tests may give it
FakeLookups."""

from __future__ import annotations

from typing import Any, Protocol

from voicebot.dialog.messages import Lookup, LookupDone


class LookupClient(Protocol):
    async def run(self, action: Lookup, context: dict[str, Any]) -> LookupDone:
        """Ask the backend; never raises: a failure is LookupDone(False, detail=...)."""
        ...


class FakeLookups:
    """Answers every lookup with `answer` (or fails with `fail`), recording the requests."""

    def __init__(self, answer: dict[str, Any] | None = None, fail: str = "") -> None:
        self.answer, self.fail = answer or {}, fail
        self.requests: list[tuple[Lookup, dict[str, Any]]] = []

    async def run(self, action: Lookup, context: dict[str, Any]) -> LookupDone:
        self.requests.append((action, context))
        return LookupDone(False, detail=self.fail) if self.fail else LookupDone(True, dict(self.answer))
