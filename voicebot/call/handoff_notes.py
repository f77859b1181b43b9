"""What a call tells about itself as it goes to a human: where it goes, the
summary (also the record's, however the call ends), and the handoff events."""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.dialog import policy as p
from voicebot.dialog.flow import Flow
from voicebot.events import HandoffDecided
from voicebot.handoff.context import HandoffContext, summarise
from voicebot.storage.base import CallRecord, utterance_json
from voicebot.types import HandoffReason, Utterance


@dataclass(frozen=True)
class HandoffNotes:
    """Reads the call as it stands: the transcript grows and the policy moves on."""

    flow: Flow
    policy: p.Policy
    transcript: list[Utterance]  # the session's own list
    human_line: str  # where a call goes when its flow names no queue

    def target(self, queue: str) -> str:
        queues = self.flow.queues
        target = queues.get(queue) if queue else next(iter(queues.values()), "")
        return target or self.human_line

    def summary(self, reason: HandoffReason | None) -> str:
        labels = {name: intent.label for name, intent in self.flow.intents.items()}
        summary = summarise(tuple(self.transcript), reason, self.policy.answered, labels)
        if reason is HandoffReason.LOOKUP_FAILED and self.policy.lookup_error:
            summary += f" The lookup failed: {self.policy.lookup_error}."
        return summary

    def context(self, reason: HandoffReason, queue: str) -> HandoffContext:
        return HandoffContext(reason, self.target(queue), tuple(self.transcript), self.summary(reason))

    def decided(self, record: CallRecord) -> HandoffDecided:
        """The event for the dialog's choice of a human, while the handoff line plays."""
        reason = self.policy.handoff_reason
        assert reason is not None
        return HandoffDecided(record.call_id, reason, self.summary(reason), record.caller, record.language,
                              tuple(self.transcript))


def handoff_event(ctx: HandoffContext) -> dict[str, object]:
    """What the gateway is told as the call goes to `ctx.target`."""
    return {
        "event": "handoff", "reason": str(ctx.reason), "target": ctx.target,
        "summary": ctx.summary, "transcript": [utterance_json(u) for u in ctx.transcript],
    }
