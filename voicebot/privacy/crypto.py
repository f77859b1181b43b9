"""Pseudonyms and sealed fields: what the storage boundary applies to personal data.

`Privacy` is the narrow interface the stores use; `FieldPrivacy` is the real
one (HMAC-SHA256 pseudonyms, AES-256-GCM sealed values) and `NoPrivacy` the
no-op beside it for unit tests of other layers.

Binary data (call recordings) is sealed with the same key as
`<key id, 8 ASCII hex digits> ‖ nonce ‖ ciphertext ‖ tag`, authenticated
together with a context string (which recording, which chunk), so a chunk
cannot be moved to another place unnoticed.

A sealed value is text: `enc1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`,
so it fits any text column and any JSON. The key id (8 hex digits) names the
key it was sealed with, so a rotation can run over data sealed under either
key, and data sealed under a key that is not configured is detected instead of
read as garbage. Values that do not look sealed (legacy rows written before
encryption, empty strings) are returned as they are by `unseal`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from voicebot.errors import ConfigError
from voicebot.privacy.keys import KeySet, Root

SEALED = re.compile(r"enc1\.([0-9a-f]{8})\.([A-Za-z0-9_-]+)")
PSEUDONYM_PREFIX = "h1."
_NUMBER_NOISE = re.compile(r"[\s().\-/]")


class UndecryptableData(ConfigError):
    """Stored data cannot be read with the configured keys: refuse to run on it."""

    def __init__(self, problem: str) -> None:
        super().__init__("secret_key", problem)


class Privacy(Protocol):
    def pseudonym(self, number: str) -> str: ...
    def seal(self, text: str) -> str: ...
    def unseal(self, value: str) -> str: ...
    def reseal(self, text: str) -> str: ...  # every sealed value inside `text`, under the current key
    def seal_bytes(self, data: bytes, context: str) -> bytes: ...
    def unseal_bytes(self, blob: bytes, context: str) -> bytes: ...


def normalise_number(number: str) -> str:
    """'+1 (555) 010-0123' and '+15550100123' are the same caller."""
    return _NUMBER_NOISE.sub("", number.strip())


class FieldPrivacy:
    def __init__(self, keys: KeySet) -> None:
        self._pseudonym_key = keys.pseudonym_key
        self._current = _Cipher(keys.current)
        self._by_id = {c.key_id: c for c in (self._current, *map(_Cipher, keys.previous))}

    @property
    def key_id(self) -> str:
        return self._current.key_id

    def pseudonym(self, number: str) -> str:
        """Stable per caller (finds their earlier calls), useless without the key."""
        number = normalise_number(number)
        if not number:
            return ""
        digest = hmac.new(self._pseudonym_key, number.encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def seal(self, text: str) -> str:
        return self._current.seal(text) if text else ""

    def unseal(self, value: str) -> str:
        match = SEALED.fullmatch(value) if value.startswith("enc1.") else None
        if match is None:
            return value
        cipher = self._by_id.get(match.group(1))
        if cipher is None:
            raise UndecryptableData(
                f"stored data was encrypted with key {match.group(1)}, which is not configured "
                f"(the configured key is {self.key_id}): set the secret key or key file it "
                "was written with; see `voicebot privacy rotate-key`")
        return cipher.open(match.group(2))

    def reseal(self, text: str) -> str:
        def again(m: re.Match[str]) -> str:
            return m.group(0) if m.group(1) == self.key_id else self.seal(self.unseal(m.group(0)))
        return SEALED.sub(again, text)

    def is_sealed(self, value: str) -> bool:
        return SEALED.fullmatch(value) is not None

    def seal_bytes(self, data: bytes, context: str) -> bytes:
        return self._current.seal_bytes(data, context)

    def unseal_bytes(self, blob: bytes, context: str) -> bytes:
        key_id = blob[:8].decode("ascii", "replace")
        cipher = self._by_id.get(key_id)
        if cipher is None:
            raise UndecryptableData(
                f"a recording was encrypted with key {key_id}, which is not configured "
                f"(the configured key is {self.key_id})")
        return cipher.open_bytes(blob[8:], context)

    def sealed_with(self, blob: bytes) -> str:
        """The key id a sealed blob names (for rotation)."""
        return blob[:8].decode("ascii", "replace")


class NoPrivacy:
    """Stores in the clear: for unit tests of layers that do not care."""

    def pseudonym(self, number: str) -> str:
        return normalise_number(number)

    def seal(self, text: str) -> str:
        return text

    def unseal(self, value: str) -> str:
        return value

    def reseal(self, text: str) -> str:
        return text

    def seal_bytes(self, data: bytes, context: str) -> bytes:
        return data

    def unseal_bytes(self, blob: bytes, context: str) -> bytes:
        return blob


class _Cipher:
    def __init__(self, root: Root) -> None:
        key = root.cipher_key
        self._aead = AESGCM(key)
        self.key_id = hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:8]

    def seal(self, text: str) -> str:
        nonce = os.urandom(12)  # random 96-bit nonces: safe far beyond our write volume
        body = nonce + self._aead.encrypt(nonce, text.encode(), self.key_id.encode())
        return f"enc1.{self.key_id}.{base64.urlsafe_b64encode(body).rstrip(b'=').decode()}"

    def seal_bytes(self, data: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        aad = f"{self.key_id}:{context}".encode()
        return self.key_id.encode() + nonce + self._aead.encrypt(nonce, data, aad)

    def open_bytes(self, body: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(body[:12], body[12:], f"{self.key_id}:{context}".encode())
        except (InvalidTag, ValueError):
            raise UndecryptableData(
                f"a recording sealed with key {self.key_id} fails its integrity check "
                "(damaged, altered or moved)") from None

    def open(self, encoded: str) -> str:
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        try:
            return self._aead.decrypt(body[:12], body[12:], self.key_id.encode()).decode()
        except (InvalidTag, ValueError):
            raise UndecryptableData(
                f"a stored value sealed with key {self.key_id} fails its integrity check "
                "(damaged or altered)") from None
