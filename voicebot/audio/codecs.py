"""G.711 μ-law ↔ PCM16 (and A-law → PCM16) by lookup table, vectorised over whole chunks.

The tables are built once at import with the G.711 formulas (no `audioop`,
which Python 3.13 removed). Encoding indexes a 64 Ki-entry table with the
int16 samples reinterpreted as uint16, so it is one numpy gather per chunk.
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> np.ndarray:
    # 14-bit magnitude as in the G.711 reference: arithmetic shift first, so
    # negative samples round away from zero exactly like other encoders.
    samples = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), _CLIP >> 2) + (_BIAS >> 2)
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    codes: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


def _build_alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)  # A-law: the set bit is +


ULAW_TO_PCM = _build_decode_table()
PCM_TO_ULAW = _build_encode_table()
ALAW_TO_PCM = _build_alaw_decode_table()


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """μ-law bytes → int16 samples."""
    return ULAW_TO_PCM.take(np.frombuffer(data, dtype=np.uint8))


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → μ-law bytes."""
    return PCM_TO_ULAW.take(np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """A-law bytes → int16 samples (recordings from A-law lines; no gateway streams it)."""
    return ALAW_TO_PCM.take(np.frombuffer(data, dtype=np.uint8))


def pcm16_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Little-endian PCM16 bytes → int16 samples (copy-free view)."""
    return np.frombuffer(data, dtype="<i2")


def decode(data: bytes | bytearray | memoryview, encoding: str) -> np.ndarray:
    """Line bytes in a stream's encoding ("mulaw" or "pcm16") → int16 samples."""
    if encoding == "mulaw":
        return ulaw_decode(data)
    if encoding == "pcm16":
        return pcm16_decode(data)
    raise ValueError(f"unknown encoding {encoding!r}")


def level_stats(samples: np.ndarray) -> tuple[float, float]:
    """(RMS in dBFS, fraction of clipped samples) of a chunk."""
    if samples.size == 0:
        return -120.0, 0.0
    x = samples.astype(np.float32)
    rms = float(np.sqrt(np.mean(x * x)))
    db = 20.0 * np.log10(max(rms, 1e-3) / 32768.0)
    clipped = float(np.count_nonzero(np.abs(x) >= 32000)) / samples.size
    return db, clipped
