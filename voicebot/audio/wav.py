"""WAV in and out for prompts, fixtures and replays (any width/channels in, mono int16 out).

Besides PCM, recordings from telephone systems come as G.711 μ-law or A-law
WAVs (WAVE_FORMAT_MULAW 7, ALAW 6), audio editors and numpy write 32- or
64-bit floats (IEEE_FLOAT 3), and some writers wrap PCM in
WAVE_FORMAT_EXTENSIBLE, which Python 3.11's `wave` refuses: those are read
from their RIFF chunks here. Anything else is a WavError naming the file.
"""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np

from voicebot.audio.codecs import alaw_decode, ulaw_decode
from voicebot.audio.resample import resample

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavError(ValueError):
    """Not a WAV file of PCM, float, μ-law or A-law audio."""


def read_wav(source: str | Path | bytes, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Samples as mono int16 and their rate; resampled to `rate` when given.
    OSError when a file cannot be read, WavError when it is not such a WAV."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        samples, in_rate = _read_pcm(data)
    except (wave.Error, EOFError) as exc:
        samples, in_rate = _read_riff(data, _name(source), str(exc) or "no RIFF/WAVE header")
    if rate is not None and rate != in_rate:
        return resample(samples, in_rate, rate), rate
    return samples, in_rate


def _name(source: str | Path | bytes) -> str:
    return "WAV bytes" if isinstance(source, bytes) else str(source)


def _read_pcm(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        width, channels, in_rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    return _mono(_to_int16(raw, width), channels), in_rate


def _read_riff(data: bytes, name: str, why: str) -> tuple[np.ndarray, int]:
    """G.711, float and extensible PCM, from the RIFF chunks `wave` would not read."""
    chunks = _chunks(data) if data[:4] == b"RIFF" and data[8:12] == b"WAVE" else {}
    fmt, raw = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or raw is None or len(fmt) < 16:
        raise WavError(f"{name}: not a WAV file of PCM, float, μ-law or A-law audio ({why})")
    tag, channels, in_rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID's first two bytes
    if channels < 1 or in_rate < 1:
        raise WavError(f"{name}: a WAV header with {channels} channels at {in_rate} Hz")
    frame = channels * bits // 8
    whole = raw[:len(raw) - len(raw) % frame] if frame else b""  # a cut-off last frame dropped
    if tag in (_MULAW, _ALAW) and bits == 8:
        return _mono((ulaw_decode if tag == _MULAW else alaw_decode)(whole), channels), in_rate
    if tag == _FLOAT and bits in (32, 64):
        floats = np.frombuffer(whole, f"<f{bits // 8}")
        return _mono(np.clip(np.round(floats * 32768.0), -32768, 32767).astype(np.int16), channels), in_rate
    if tag == _PCM and bits in (8, 16, 24, 32):
        return _mono(_to_int16(whole, bits // 8), channels), in_rate
    raise WavError(f"{name}: WAV format {tag} with {bits}-bit samples; voicebot reads PCM, float, "
                   "μ-law and A-law (convert with: sox IN.wav -e signed -b 16 OUT.wav)")


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """A RIFF file's chunks by id (the first of each); a cut-off last chunk as far as it goes."""
    found: dict[bytes, bytes] = {}
    at = 12
    while at + 8 <= len(data):
        cid, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        found.setdefault(cid, data[at + 8:at + 8 + size])
        at += 8 + size + (size & 1)
    return found


def _mono(samples: np.ndarray, channels: int) -> np.ndarray:
    mono: np.ndarray = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return mono


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
    raise WavError(f"unsupported WAV sample width: {width} bytes")


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
