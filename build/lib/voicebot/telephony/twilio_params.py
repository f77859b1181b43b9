"""Which form parameters a Twilio voice webhook may carry.

Twilio's signature concatenates each name with its value and no separator,
so the same signature also verifies a re-split form: `CallStatuscompleted=""`
in place of `CallStatus=completed`. We therefore accept only the parameter
names Twilio documents for voice webhooks, require the ones an endpoint reads
(never defaulting them), and accept only the values Twilio sends for the
statuses we act on.
"""

from __future__ import annotations

from collections.abc import Mapping

_GEO = ("City", "Country", "State", "Zip")
KNOWN = frozenset({
    "AccountSid", "ApiVersion", "CallSid", "CallStatus", "CallToken", "Called", "Caller",
    "CallerName", "Direction", "ForwardedFrom", "From", "To", "ParentCallSid",
    "StirVerstat", "StirPassportToken", "AddOns", "CallbackSource", "SequenceNumber",
    "Timestamp", "Duration", "CallDuration", "Digits", "FinishedOnKey", "SpeechResult",
    "Confidence", "RecordingUrl", "RecordingSid", "RecordingDuration",
    "DialCallStatus", "DialCallSid", "DialCallDuration", "DialBridged", "DialSipCallId",
    "DialSipResponseCode", "SipCallId", "SipDomain", "SipDomainSid", "SipSourceIp",
    "SipResponseCode", "StreamSid", "StreamError", "StreamEvent", "StreamName",
    "ApplicationSid", "CalledVia", "AnsweredBy", "ErrorCode", "ErrorUrl", "ErrorMessage",
    *(who + geo for who in ("Called", "Caller", "From", "To") for geo in _GEO),
})
OPEN_PREFIXES = ("SipHeader_", "DialSipHeader_")  # carry SIP header names of the caller's choosing
CALL_STATUSES = frozenset({"queued", "initiated", "ringing", "in-progress", "completed", "busy",
                           "failed", "no-answer", "canceled"})
DIAL_STATUSES = frozenset({"completed", "answered", "busy", "no-answer", "failed", "canceled"})
_VALUES = {"CallStatus": CALL_STATUSES, "DialCallStatus": DIAL_STATUSES}


def check_parameters(form: Mapping[str, str], required: tuple[str, ...]) -> str:
    """"" when the form is acceptable, else what is wrong with it (no values
    quoted: they may be caller numbers)."""
    for name in form:
        if name not in KNOWN and not name.startswith(OPEN_PREFIXES):
            return f"unknown parameter {name[:40]!r}"
    for name in required:  # present; `From` may be empty for a withheld number
        if name not in form or (name == "CallSid" and not form[name]):
            return f"missing parameter {name!r}"
    for name, allowed in _VALUES.items():
        if name in form and form[name] not in allowed:
            return f"unexpected {name}"
    return ""
