"""What a call announces to the rest of the process while it runs.

The session publishes; whoever cares (the staff desk, a CRM webhook, metrics)
subscribes in the composition root. The bus is synchronous and never blocks:
a subscriber that needs I/O schedules its own task. That keeps the call's path
free of the desk and lets the desk learn of a transfer the moment the dialog
decides on it, while the handoff line is still playing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from voicebot.types import HandoffReason, Utterance

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HandoffDecided:
    """The dialog chose to hand over; the handoff line is about to play."""

    call_id: str
    reason: HandoffReason
    summary: str
    caller: str
    language: str
    transcript: tuple[Utterance, ...]
    at: float = field(default_factory=time.time)
    kind: Literal["handoff_decided"] = "handoff_decided"


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    outcome: str  # handoff | completed | abandoned
    at: float = field(default_factory=time.time)
    kind: Literal["call_ended"] = "call_ended"


@dataclass(frozen=True, slots=True)
class HumanLineEnded:
    """The gateway's dial to the human line is over (Twilio <Dial action>)."""

    call_id: str
    connected: bool  # a person answered
    caller_waiting: bool  # the caller is still on the line (we promised a call back)
    status: str  # the gateway's word for it: busy, no-answer, failed, canceled, completed
    at: float = field(default_factory=time.time)
    kind: Literal["human_line_ended"] = "human_line_ended"


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call was admitted; `line_rate` tells telephone (8 kHz) from wideband lines."""

    call_id: str
    gateway: str
    language: str
    line_rate: int
    at: float = field(default_factory=time.time)
    kind: Literal["call_started"] = "call_started"


@dataclass(frozen=True, slots=True)
class CallTagged:
    """A label the deployment attaches to a call (a gateway parameter, a flow
    variable, an A/B variant) for reports split by caller group."""

    call_id: str
    key: str
    value: str
    at: float = field(default_factory=time.time)
    kind: Literal["call_tagged"] = "call_tagged"


@dataclass(frozen=True, slots=True)
class SpeechEndDetected:
    """The VAD decided the caller stopped speaking; recognition of it starts now."""

    call_id: str
    at: float = field(default_factory=time.time)
    silence_s: float = 0.0  # the silence after their speech the turn waited (0: hung up, cut at the limit)
    kind: Literal["speech_end_detected"] = "speech_end_detected"


@dataclass(frozen=True, slots=True)
class AnswerHeld:
    """A turn's reading was ready while the caller's voice was starting again (too
    little of it yet to call speech): the answer waited to see whether they go on."""

    call_id: str
    at: float = field(default_factory=time.time)
    kind: Literal["answer_held"] = "answer_held"


@dataclass(frozen=True, slots=True)
class TurnJoined:
    """The caller spoke on before the bot answered the turn that had ended: that
    turn is heard again with what followed, as one (its speech end is withdrawn)."""

    call_id: str
    at: float = field(default_factory=time.time)
    kind: Literal["turn_joined"] = "turn_joined"


@dataclass(frozen=True, slots=True)
class CallAudio:
    """Seconds of caller audio the call received; published once, as it ends."""

    call_id: str
    seconds: float
    at: float = field(default_factory=time.time)
    kind: Literal["call_audio"] = "call_audio"


@dataclass(frozen=True, slots=True)
class CallError:
    """Something failed during the call (the caller goes to a human)."""

    call_id: str
    error: str  # recognition | prompt | internal
    at: float = field(default_factory=time.time)
    kind: Literal["call_error"] = "call_error"


CallEvent = (HandoffDecided | CallEnded | HumanLineEnded | CallStarted | CallTagged
             | SpeechEndDetected | TurnJoined | AnswerHeld | CallAudio | CallError)
Subscriber = Callable[[CallEvent], None]


class CallEventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: CallEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a broken subscriber must never break the call
                log.exception("call %r: event subscriber failed on %s", event.call_id, event.kind)
