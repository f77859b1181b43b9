"""How much better the grammar's sentence fits a turn than the free phone loop.

The margin is the score of the sentence path minus that of the phone loop per
10 ms frame, taken over a window: the speech (frames SPEECH_OVER_FLOOR_DB over
the turn's quietest tenth) and the silence the confidence map was calibrated
with around it. The phone loop has no silence unit, so frames of line noise
favour the sentence path; over every frame the same words read surer the
longer the caller stayed silent after them, and other speech followed by a
second or two of silence (a caller thinking, a mid-sentence wait) crossed the
accept threshold (benchmarks/silence_confidence.py).
"""

from __future__ import annotations

import math

import numpy as np
from pocketsphinx import Decoder

SPEECH_OVER_FLOOR_DB = 9.0
BEFORE_SPEECH = 30  # frames kept before the speech: the VAD's pre-roll
AFTER_SPEECH = 50  # frames kept after it: the VAD's hangover
FRAME_BYTES = 320  # 10 ms of 16 kHz 16-bit audio, pocketsphinx's frame
LN_BASE = math.log(1.0001)  # pocketsphinx's log base


class FrameLevels:
    """The level in dB of each 10 ms frame of a stream, measured as it arrives."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._rest = b""  # the end of the audio that does not fill a frame yet

    def add(self, pcm: bytes) -> None:
        audio = self._rest + pcm
        whole = len(audio) // FRAME_BYTES * FRAME_BYTES
        samples = np.frombuffer(audio[:whole], dtype="<i2").astype(np.float64)
        power = (samples.reshape(-1, FRAME_BYTES // 2) ** 2).mean(axis=1)
        self._parts.append(10.0 * np.log10(power + 1.0))
        self._rest = audio[whole:]

    def all(self) -> np.ndarray:
        if len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros(0)]
        return self._parts[0]


def window(levels: np.ndarray, frames: int) -> tuple[int, int] | None:
    """First and last frame of the margin's window within the `frames` decoded."""
    if levels.size == 0 or frames < 1:
        return None
    loud = np.flatnonzero(levels >= np.percentile(levels, 10) + SPEECH_OVER_FLOOR_DB)
    if loud.size == 0:
        return None
    first, last = max(0, int(loud[0]) - BEFORE_SPEECH), min(int(loud[-1]) + AFTER_SPEECH, frames - 1)
    return (first, last) if first <= last else None


def path_score(decoder: Decoder, first: int, last: int) -> float:
    """The best path's score over frames first..last (log units); a segment cut
    by the window counts in part."""
    total = 0.0
    for seg in decoder.seg():
        inside = min(seg.end_frame, last) - max(seg.start_frame, first) + 1
        if seg.word != "(NULL)" and inside > 0:
            score = (math.log(max(seg.ascore, 1e-300)) + math.log(max(seg.lscore, 1e-300))) / LN_BASE
            total += score * inside / (seg.end_frame - seg.start_frame + 1)
    return total


def margin_over_loop(sentences: Decoder, loop: Decoder, levels: np.ndarray) -> float:
    """Per-frame margin of the sentence path over the phone loop within the window."""
    span = window(levels, sentences.n_frames())
    if span is None:
        return float("-inf")
    first, last = span
    return (path_score(sentences, first, last) - path_score(loop, first, last)) / (last - first + 1)
