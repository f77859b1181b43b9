"""Rendered prompt audio, cached per (voice, text, line rate).

Fixed prompts are rendered at start-up; dynamic text is rendered on demand.
All synthesis runs on one worker thread so the event loop never waits on it.
Each prompt starts at its first voiced sample: the synthesizer's lead-in
silence (espeak-ng: 10-40 ms) would only add to the caller's wait.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from voicebot.audio.resample import resample
from voicebot.tts.base import Synthesizer

_MAX_DYNAMIC = 256
VOICED_LEVEL = 100  # |sample| at or above this (about -50 dBFS) is sound, not the lead-in


def without_lead_in(samples: np.ndarray, level: int = VOICED_LEVEL) -> np.ndarray:
    """`samples` from the first one at or above `level` (all of them if none is)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= level)
    return samples[loud[0]:] if loud.size else samples


class PromptCache:
    def __init__(self, synthesizer: Synthesizer) -> None:
        self._synth = synthesizer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts")
        self._fixed: dict[tuple[str, str, int], np.ndarray] = {}
        self._dynamic: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()

    async def prerender(self, voice: str, texts: Iterable[str], rates: Iterable[int]) -> None:
        for text in texts:
            for rate in rates:
                self._fixed[(voice, text, rate)] = await self._render(voice, text, rate)

    def prerendered(self, voice: str, text: str, rate: int) -> bool:
        """Rendered before any call asked for it (a call will not wait for it)."""
        return (voice, text, rate) in self._fixed

    async def get(self, voice: str, text: str, rate: int) -> np.ndarray:
        key = (voice, text, rate)
        if key in self._fixed:
            return self._fixed[key]
        if key in self._dynamic:
            self._dynamic.move_to_end(key)
            return self._dynamic[key]
        samples = await self._render(voice, text, rate)
        self._dynamic[key] = samples
        if len(self._dynamic) > _MAX_DYNAMIC:
            self._dynamic.popitem(last=False)
        return samples

    async def _render(self, voice: str, text: str, rate: int) -> np.ndarray:
        loop = asyncio.get_running_loop()
        samples, src_rate = await loop.run_in_executor(
            self._executor, self._synth.synthesize, text, voice
        )
        return without_lead_in(resample(samples, src_rate, rate))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
