"""The window the grammar recogniser's margin is taken over (voicebot/asr/sphinx_margin.py)."""

from __future__ import annotations

import numpy as np

from tests import asr_audio as A
from voicebot.asr.sphinx_margin import AFTER_SPEECH, BEFORE_SPEECH, FrameLevels, window


def tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def levels_of(pcm: bytes, chunk: int) -> np.ndarray:
    levels = FrameLevels()
    for i in range(0, len(pcm), chunk):
        levels.add(pcm[i:i + chunk])
    return levels.all()


def test_levels_are_the_same_whatever_the_chunks_the_audio_arrives_in():
    pcm = A.noise(0.5, -50.0) + tone(0.3) + A.noise(0.4, -50.0)
    whole = levels_of(pcm, len(pcm))
    assert whole.size == len(pcm) // 320
    for chunk in (2, 318, 642, 3200):
        np.testing.assert_allclose(levels_of(pcm, chunk), whole)


def test_the_window_keeps_the_speech_and_only_the_silence_calibrated_around_it():
    pcm = A.noise(1.0, -50.0) + tone(1.0) + A.noise(2.0, -50.0)
    first, last = window(levels_of(pcm, 3200), frames=400)
    assert abs(first - (100 - BEFORE_SPEECH)) <= 2
    assert abs(last - (199 + AFTER_SPEECH)) <= 2


def test_the_window_ends_with_the_decoded_frames_and_is_none_without_speech():
    pcm = A.noise(0.2, -50.0) + tone(1.0)
    assert window(levels_of(pcm, 3200), frames=100)[1] == 99
    assert window(levels_of(A.noise(1.0, -50.0), 3200), frames=100) is None
    assert window(np.zeros(0), frames=100) is None
