"""A sentence encoder: text to a unit vector whose dot product with another
sentence's says how alike their meanings are (all-MiniLM-L6-v2, a six-layer
BERT trained for sentence similarity, Apache-2.0).

The forward pass is plain numpy over the model's safetensors file (no torch):
a caller's sentence is ~10 tokens, where the pass takes a few milliseconds on
one core. Tokens come from the model's own `tokenizer.json` (the `tokenizers`
library that faster-whisper already brings; imported only when an encoder is
made, so a server without the whisper extra starts without it).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
MAX_TOKENS = 128  # callers' sentences are far shorter; a long transcript is cut here
BATCH = 32  # sentences encoded together: a flow's examples at start-up, in bounded memory


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as float32 arrays (integers kept)."""
    data = np.memmap(path, np.uint8, mode="r")  # mapped, not read: each tensor is copied once
    (size,) = struct.unpack("<Q", data[:8].tobytes())
    header = json.loads(data[8:8 + size].tobytes())
    base, out = 8 + size, {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        array = data[base + start:base + end].view(_DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name] = array.astype(np.float32) if array.dtype.kind == "f" else np.array(array)
    del data
    return out


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * gain + bias
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz and Stegun 7.1.26 (error under 1.5e-7): numpy has no erf."""
    sign, a = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: np.ndarray = sign * (1.0 - poly * np.exp(-a * a))
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class SentenceEncoder:
    """A BERT sentence-transformer model directory (config.json, model.safetensors,
    tokenizer.json): mean of the last layer over the tokens, L2-normalised."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        self.heads, self.layers = int(config["num_attention_heads"]), int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.w = read_safetensors(path / "model.safetensors")
        for name, array in self.w.items():  # x @ W, with W laid out for it once (not a strided view each time)
            if array.ndim == 2 and ".layer." in name:
                self.w[name] = np.ascontiguousarray(array.T)
        from tokenizers import Tokenizer  # the whisper extra's

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (rows), computed a few at a time."""
        width = self.w["embeddings.word_embeddings.weight"].shape[1]
        parts = [self._encode(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        encoded = [e.ids for e in self.tokenizer.encode_batch(texts)]
        width = max(len(ids) for ids in encoded)
        ids = np.zeros((len(texts), width), np.int64)
        mask = np.zeros((len(texts), width), np.float32)
        for row, seq in enumerate(encoded):
            ids[row, :len(seq)], mask[row, :len(seq)] = seq, 1.0
        x = self._forward(ids, mask)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        unit: np.ndarray = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)
        return unit

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:ids.shape[1]] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hide = (1.0 - mask)[:, None, None, :] * -1e9  # padding is never attended to
        for layer in range(self.layers):
            x = self._layer(x, hide, f"encoder.layer.{layer}.")
        return x

    def _layer(self, x: np.ndarray, hide: np.ndarray, p: str) -> np.ndarray:
        w, (batch, width, dim) = self.w, x.shape
        size = dim // self.heads

        def heads(name: str) -> np.ndarray:
            y = x @ w[p + f"attention.self.{name}.weight"] + w[p + f"attention.self.{name}.bias"]
            split: np.ndarray = y.reshape(batch, width, self.heads, size).transpose(0, 2, 1, 3)
            return split

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / math.sqrt(size) + hide
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ heads("value")).transpose(0, 2, 1, 3).reshape(batch, width, dim)
        out = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
        x = _layer_norm(out + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                        self.eps)
        inner = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
        out = inner @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
        return _layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
