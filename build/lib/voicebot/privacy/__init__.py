"""Privacy by design: caller pseudonyms, sealed fields, redaction, the caller's rights.

`crypto.Privacy` is the narrow interface the storage boundary applies
(`voicebot.storage.sealed`); `keys` says where the keys come from; `redact`
turns numbers and addresses into typed placeholders.
"""

from __future__ import annotations

from pathlib import Path

from voicebot.config import Settings
from voicebot.privacy.crypto import FieldPrivacy
from voicebot.privacy.keys import load_keys


def privacy_for(settings: Settings) -> FieldPrivacy:
    """The configured keys (generating the key file on first start)."""
    return FieldPrivacy(load_keys(settings.secret_key, Path(settings.key_path),
                                  settings.previous_secret_key, settings.pseudonym_key))
