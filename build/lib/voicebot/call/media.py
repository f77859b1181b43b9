"""What a call session needs from a telephony adapter: a way to talk back.

Adapters translate their wire format into calls on `CallSession` (audio in,
DTMF, marks, hang-up) and implement this protocol for the way out.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class MediaChannel(Protocol):
    line_rate: int  # sample rate of the audio the gateway sends and expects

    async def send_audio(self, samples: np.ndarray) -> None:
        """Queue int16 audio at line_rate for playout (the adapter encodes it)."""

    async def send_mark(self, name: str) -> None:
        """Ask the gateway to echo `name` once everything sent before it has played."""

    async def send_clear(self) -> None:
        """Drop audio queued at the gateway (barge-in)."""

    async def send_event(self, event: dict[str, Any]) -> None:
        """A JSON event for gateways that take them (native protocol); others ignore it."""

    async def end(self, reason: str) -> None:
        """Finish the media stream: the gateway then transfers or hangs up the call."""
