"""Serving HTTPS/WSS directly from certificate files (`VOICEBOT_TLS_CERT`/`_KEY`).

Behind a TLS-terminating proxy, leave both unset (see README, *In transit*).
"""

from __future__ import annotations

import ssl

from voicebot.config import Settings
from voicebot.errors import ConfigError


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError("tls_key" if settings.tls_cert else "tls_cert",
                          "set both tls_cert and tls_key, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls_cert", f"cannot load {settings.tls_cert} with "
                                      f"{settings.tls_key}: {exc}") from None
    return context
