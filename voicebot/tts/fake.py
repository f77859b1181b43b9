"""A Synthesizer for tests: instant, deterministic audio, or a scripted failure.

    FakeSynthesizer()                          # 10 ms of tone per character, at 16 kHz
    FakeSynthesizer(fail=RuntimeError("tts"))  # every synthesize() raises
    FakeSynthesizer(fail_on="handoff")         # raises for texts containing "handoff"

`spoken` lists the texts it was asked for, in order.
"""

from __future__ import annotations

import threading

import numpy as np

RATE = 16000


class FakeSynthesizer:
    name = "fake"

    def __init__(self, *, ms_per_char: float = 10.0, fail: BaseException | None = None,
                 fail_on: str = "") -> None:
        self.ms_per_char = ms_per_char
        self.fail = fail
        self.fail_on = fail_on
        self.spoken: list[str] = []
        self._lock = threading.Lock()

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        with self._lock:
            self.spoken.append(text)
        if self.fail is not None and (not self.fail_on or self.fail_on in text):
            raise self.fail
        n = max(1, int(len(text) * self.ms_per_char * RATE / 1000))
        tone = 3000 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)
        return tone.astype(np.int16), RATE
