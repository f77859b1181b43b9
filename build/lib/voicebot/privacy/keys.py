"""Where the keys come from: `VOICEBOT_SECRET_KEY`, or a key file made on first start.

One root secret yields two keys by HKDF-SHA256 with distinct labels: one for
the caller pseudonyms (HMAC) and one for the field cipher (AES-256-GCM), so
neither key can be learnt from the other's output. `VOICEBOT_PSEUDONYM_KEY`
sets the pseudonym key's root separately: pseudonyms then stay the same when
the encryption key is rotated.

Without `VOICEBOT_SECRET_KEY`, a random 256-bit root is generated into the key
file (default `<db>.key`), created owner-only (0600) and never widened; a key
file that others can read is refused. Keep the key file off the database's
disk (`VOICEBOT_KEY_FILE`) or set the secret from your secret store: whoever
holds both the database and the key can read it.

Rotation (`voicebot privacy rotate-key`) keeps the old root readable while the
data is re-encrypted: with a key file, the new root waits in `<key>.new` until
every value is under it; with `VOICEBOT_SECRET_KEY`, the old one goes in
`VOICEBOT_PREVIOUS_SECRET_KEY` for the time of the rotation.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from voicebot.errors import ConfigError

log = logging.getLogger(__name__)
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class Root:
    """A root secret and the two keys derived from it."""

    secret: bytes

    @property
    def pseudonym_key(self) -> bytes:
        return _derive(self.secret, b"voicebot caller pseudonym v1")

    @property
    def cipher_key(self) -> bytes:
        return _derive(self.secret, b"voicebot field cipher v1")


@dataclass(frozen=True)
class KeySet:
    current: Root
    previous: tuple[Root, ...] = ()  # readable, never written with
    generated: bool = False  # the key file was made just now
    pseudonym_root: Root | None = None  # set separately: pseudonyms outlive key rotations

    @property
    def pseudonym_key(self) -> bytes:
        return (self.pseudonym_root or self.current).pseudonym_key


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def root_from_text(text: str, key: str) -> Root:
    if len(text) < MIN_SECRET_CHARS:
        raise ConfigError(key, f"must be at least {MIN_SECRET_CHARS} characters "
                               "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return Root(text.encode())


def load_keys(secret: str, key_file: Path, previous_secret: str = "",
              pseudonym_secret: str = "") -> KeySet:
    """The configured keys; generates the key file when no secret is configured."""
    previous = [root_from_text(previous_secret, "previous_secret_key")] if previous_secret else []
    pseudonym = root_from_text(pseudonym_secret, "pseudonym_key") if pseudonym_secret else None
    if secret:
        return KeySet(root_from_text(secret, "secret_key"), tuple(previous),
                      pseudonym_root=pseudonym)
    generated = not key_file.exists()
    if generated:
        write_key_file(key_file, new_root())
        log.warning("no VOICEBOT_SECRET_KEY: generated a key in %s (owner-only). Back it up: "
                    "without it the stored calls cannot be read", key_file)
    current = read_key_file(key_file)
    pending = pending_path(key_file)
    if pending.exists():  # a rotation was interrupted: data may be under either root
        log.warning("%s exists: a key rotation did not finish; run `voicebot privacy "
                    "rotate-key` again", pending)
        previous.append(read_key_file(pending))
    return KeySet(current, tuple(previous), generated, pseudonym)


def pending_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".new")


def new_root() -> Root:
    return Root(secrets.token_hex(32).encode())


def write_key_file(path: Path, root: Root) -> None:
    """Owner-only from the first byte (no window where the file is readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(root.secret + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_key_file(path: Path) -> Root:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("key_file", f"cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("key_file", f"{path} can be read by other users; "
                                      f"run `chmod 600 {path}`")
    return root_from_text(text, "key_file")
