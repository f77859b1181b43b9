"""The exception tree.

VoicebotError
 ├── ConfigError       bad setting; names the key; raised at start-up
 ├── ProtocolError     a gateway sent something we cannot accept; closes that one call
 ├── EngineError       ASR/TTS failed or hung; the call is handed to a human (system_error)
 └── StoreUnavailable  the call database cannot be read right now (writes are journalled)
"""

from __future__ import annotations


class VoicebotError(Exception):
    pass


class ConfigError(VoicebotError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key


class ProtocolError(VoicebotError):
    """`code` is the WebSocket close code sent to the gateway, `reason` its text."""

    def __init__(self, reason: str, code: int = 1008) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class EngineError(VoicebotError):
    pass


class StoreUnavailable(VoicebotError):
    pass
