"""What the call session tells the dialog policy (events in) and what the policy
asks the session to do (actions out): plain frozen dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicebot.dialog.reading import Reading
from voicebot.types import HandoffReason, Outcome, Utterance


# --- events in ---------------------------------------------------------------
@dataclass(frozen=True)
class PromptDone:
    prompt_id: int
    interrupted: bool = False


@dataclass(frozen=True)
class SpeechBegan:
    pass


@dataclass(frozen=True)
class Heard:
    utterance: Utterance
    reading: Reading | None = None  # what it means, as the session read it (None: read it here)


@dataclass(frozen=True)
class KeyPressed:
    digit: str


@dataclass(frozen=True)
class NoInput:
    pass


@dataclass(frozen=True)
class Failed:
    detail: str


@dataclass(frozen=True)
class HandOver:
    """The service, not the conversation, needs a human to take the call."""

    reason: HandoffReason


@dataclass(frozen=True)
class LookupDone:
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    detail: str = ""  # why it failed


Event = PromptDone | SpeechBegan | Heard | KeyPressed | NoInput | Failed | HandOver | LookupDone


# --- actions out -------------------------------------------------------------
@dataclass(frozen=True)
class Say:
    prompt_id: int
    name: str
    text: str
    interruptible: bool


@dataclass(frozen=True)
class StopPlayback:
    """Barge-in: drop the rest of the playing prompt (Twilio `clear`)."""


@dataclass(frozen=True)
class ExpectInput:
    timeout_s: float
    context: str = "open"  # what the recogniser listens for
    hangover_ms: int | None = None  # this question's end-of-turn silence (None: the default)


@dataclass(frozen=True)
class Handoff:
    reason: HandoffReason
    queue: str = ""  # a queue of the flow ("" = its first, or VOICEBOT_HUMAN_LINE)


@dataclass(frozen=True)
class End:
    outcome: Outcome


@dataclass(frozen=True)
class Lookup:
    url: str
    payload: dict[str, str]
    timeout_s: float


@dataclass(frozen=True)
class Survey:
    """Store the survey's state with the call: `offered`, then `rated` (with the
    rating) or how it was skipped: `silence`, `other_key`, `spoke`, `person` (asked
    for one), `interrupted` (the service handed the call over: shutdown, a failure)."""

    status: str
    rating: int | None = None


@dataclass(frozen=True)
class RecordingConsent:
    """The caller was asked to allow recording ("asked"), or answered: "given"
    (DTMF 1 or yes), "refused" (no, another key) or "no_answer" (silence, not
    understood, or they went to a person instead)."""

    answer: str


Action = Say | StopPlayback | ExpectInput | Handoff | End | Lookup | Survey | RecordingConsent
