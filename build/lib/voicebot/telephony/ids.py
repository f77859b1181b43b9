"""Ids a gateway chooses (native call_id, Twilio CallSid and StreamSid) end up
in logs, records and URLs: only a safe character set and length, so none can
forge a log line or a path."""

from __future__ import annotations

import re

from voicebot.errors import ProtocolError

SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
RULE = "1-128 letters, digits or . _ : -"


def safe_id(value: str) -> bool:
    return SAFE_ID.fullmatch(value) is not None


def check_id(value: str, what: str) -> str:
    if not safe_id(value):
        raise ProtocolError(f"{what} must be {RULE}")
    return value
