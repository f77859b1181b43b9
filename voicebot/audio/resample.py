"""Streaming sample-rate conversion, one converter per call direction.

python-soxr keeps filter state between chunks, so 20 ms pieces resample
exactly as the whole signal would (no clicks at chunk edges).
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="MQ")
        )

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16), last=last)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal conversion (prompts, fixtures)."""
    if in_rate == out_rate:
        return samples.astype(np.int16, copy=False)
    return soxr.resample(samples.astype(np.int16, copy=False), in_rate, out_rate, quality="HQ")
