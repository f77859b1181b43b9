"""Streaming sample-rate conversion, one converter per call direction.

python-soxr keeps filter state between chunks, so 20 ms pieces resample
exactly as the whole signal would (no clicks at chunk edges).
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """`batch` > 0 holds input until that many samples are queued: soxr's cost
    per call is mostly fixed, and at "MQ" it only emits output every ~100 ms
    anyway, so 100 ms batches cost less without delaying the audio further."""

    def __init__(self, in_rate: int, out_rate: int, batch: int = 0) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._batch = batch
        self._held: list[np.ndarray] = []
        self._held_n = 0
        self._stream = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="MQ")
        )

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        if self._batch:
            self._held.append(samples)
            self._held_n += samples.size
            if self._held_n < self._batch and not last:
                return _EMPTY
            samples = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
            self._held, self._held_n = [], 0
        out: np.ndarray = self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16), last=last)
        return out


_EMPTY = np.zeros(0, dtype=np.int16)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal conversion (prompts, fixtures)."""
    if in_rate == out_rate:
        return samples.astype(np.int16, copy=False)
    out: np.ndarray = soxr.resample(samples.astype(np.int16, copy=False), in_rate, out_rate, quality="HQ")
    return out
