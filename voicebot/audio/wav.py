"""WAV in and out for prompts, fixtures and replays (any width/channels in, mono int16 out)."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from voicebot.audio.resample import resample


def read_wav(source: str | Path | bytes, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Samples as mono int16 and their rate; resampled to `rate` when given."""
    with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as wav:
        width, channels, in_rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = _to_int16(raw, width).reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate is not None and rate != in_rate:
        return resample(samples, in_rate, rate), rate
    return samples, in_rate


def _to_int16(raw: bytes, width: int) -> np.ndarray:
    if width == 1:
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 2:
        return np.frombuffer(raw, "<i2")
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        return (b[:, 2].astype(np.int8).astype(np.int16) << 8) | b[:, 1]
    if width == 4:
        return (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    raise ValueError(f"unsupported WAV sample width: {width} bytes")


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return out.getvalue()


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    Path(path).write_bytes(wav_bytes(samples, rate))
