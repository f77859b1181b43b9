"""The synthesiser interface. Implementations block; callers run them off the loop."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Synthesizer(Protocol):
    name: str

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """Speak `text` with `voice`; return mono int16 samples and their rate."""
