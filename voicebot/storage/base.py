"""The call store interface and the record it keeps.

A record is written incrementally while the call runs (call row first, each
utterance and prompt as it happens, the outcome at the end), so a caller who
hangs up mid-sentence still leaves what was heard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from voicebot.types import Utterance


@dataclass
class CallRecord:
    call_id: str
    gateway: str  # "twilio" | "native"
    gateway_call_id: str = ""  # Twilio CallSid
    stream_id: str = ""  # Twilio streamSid
    caller: str = ""  # as stored: a pseudonym (voicebot.storage.sealed)
    language: str = "en"
    started_at: float = 0.0
    ended_at: float | None = None
    disclosure_text: str = ""
    disclosure_started_at: float | None = None
    disclosure_played_at: float | None = None
    disclosure_confirmed_by: str = ""  # "mark" (gateway echo) | "playout" (our paced clock) | "timer"
    recording_consent: str = ""  # "" not asked | asked | given | refused | no_answer
    outcome: str = ""  # handoff | completed | abandoned
    handoff_reason: str = ""
    handoff_target: str = ""
    summary: str = ""
    utterances: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)  # free-form (voicebot.transcript)
    caller_sealed: str = ""  # as stored: the number, encrypted (for call backs and the desk)
    survey: str = ""  # post-call survey: "" (not offered), offered, rated, or how it was skipped
    csat: int | None = None  # the caller's rating, 1-5, when rated

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("caller_sealed")  # storage's business; `caller` is the number when read
        return data


EVENT_LISTS = {"utterance": "utterances", "prompt": "prompts", "transcript": "transcripts"}


def utterance_json(u: Utterance) -> dict[str, Any]:
    return {
        "text": u.text, "confidence": round(u.confidence, 3), "start": round(u.start, 3),
        "end": round(u.end, 3), "source": str(u.source), "intent": u.intent,
        "words": [
            {"text": w.text, "conf": round(w.conf, 3), "start": round(w.start, 3),
             "end": round(w.end, 3)}
            for w in u.words
        ],
    }


class CallStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def create(self, record: CallRecord) -> None: ...
    async def update(self, call_id: str, **fields: Any) -> None: ...
    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None: ...
    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None: ...
    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None: ...
    # the call whose call_id is this; only when there is none, the first call whose
    # gateway_call_id is (a gateway's id can never hide another call's record)
    async def get(self, call_or_gateway_id: str) -> CallRecord | None: ...
    async def erase_caller(self, caller: str) -> list[str]: ...  # the ids of the calls deleted
    async def erase_started_before(self, cutoff: float) -> list[str]: ...
    async def calls_of_caller(self, caller: str) -> list[CallRecord]: ...  # oldest first
    async def claim_meta(self, name: str, value: str) -> str: ...  # stored value, set if none


class RewritableStore(CallStore, Protocol):
    """A backend `voicebot privacy rotate-key` can re-encrypt: every call row
    (`row`), event payload (`item(kind, payload)`) and meta value (`meta`) through
    the given functions, atomically. Returns the number of calls."""

    async def rewrite(self, row: Callable[[dict[str, Any]], dict[str, Any]],
                      item: Callable[[str, dict[str, Any]], dict[str, Any]],
                      meta: Callable[[str], str]) -> int: ...
