"""Plain data shared by every layer. Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# What a free-form engine's words are compared with: (intent name, example sentences).
Topics = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    conf: float
    start: float  # seconds from the start of the utterance audio
    end: float


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recogniser made of one utterance.

    `confidence` is in [0, 1] and comparable across engines: the dialog policy
    treats anything under its threshold as "not understood". An empty `text`
    means nothing usable was heard.
    """

    text: str
    confidence: float
    words: tuple[Word, ...] = ()
    # A free-form engine asked to check another recogniser's words: how well they fit
    # the audio against its own (mean log-probability per token, theirs minus its own;
    # 0 = as well, strongly negative = words the audio does not hold). None: not checked.
    fit: float | None = None
    # How close the words' meaning is to each topic the engine was given (intent name,
    # best sentence similarity to its examples, in [-1, 1]); () = not compared.
    closeness: tuple[tuple[str, float], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.text.strip()


@dataclass(frozen=True, slots=True)
class Partial:
    """What a recogniser has heard of an utterance still in progress.

    `whole`: the words are one complete phrase of the stream's listen context
    (not a prefix of one); the end-of-turn logic ends a turn early on it.
    `decoded`: the engine has an opinion of the audio so far; empty words then
    mean it heard nothing it knows (other speech), not that it could not tell
    yet (too little audio, every decoder busy)."""

    text: str
    confidence: float
    whole: bool
    decoded: bool = False


class Source(StrEnum):
    SPEECH = "speech"
    DTMF = "dtmf"


class HandoffReason(StrEnum):
    CALLER_REQUEST = "caller_request"
    LOW_CONFIDENCE = "low_confidence"
    NO_INPUT = "no_input"
    UNRESOLVED = "unresolved"
    SYSTEM_ERROR = "system_error"
    ROUTED = "routed"  # the flow sends this request to a person (a transfer node)
    LOOKUP_FAILED = "lookup_failed"  # the deployment's backend did not answer a lookup
    # set by the service, not the conversation: the caller still reaches a human
    OVER_CAPACITY = "over_capacity"  # more calls than VOICEBOT_MAX_CALLS
    MAX_DURATION = "max_duration"  # the call reached VOICEBOT_MAX_CALL_S
    MEDIA_TIMEOUT = "media_timeout"  # the gateway sent no audio for VOICEBOT_IDLE_TIMEOUT_S
    SHUTDOWN = "shutdown"  # the server is stopping (SIGTERM)
    OPTED_OUT = "opted_out"  # the caller opted out of the automated assistant before


class Outcome(StrEnum):
    HANDOFF = "handoff"
    COMPLETED = "completed"
    ABANDONED = "abandoned"  # caller hung up before the bot finished


@dataclass(frozen=True, slots=True)
class Utterance:
    """One caller turn, as stored and as shown to the human who takes over."""

    text: str
    confidence: float
    start: float  # seconds since the call started
    end: float
    source: Source = Source.SPEECH
    intent: str | None = None
    words: tuple[Word, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ListenContext:
    """What the caller may say at one kind of question, as phrases to favour.

    The dialog layer compiles these from the flow; the recognisers build their
    searches from them and never see the flow itself."""

    name: str  # "open" (the menu's intents), "yesno", "digits", ...
    phrases: tuple[str, ...]  # phrase templates (voicebot.phrases), lower case


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Everything one language's recogniser needs to know about the flow."""

    language: str
    contexts: tuple[ListenContext, ...]

    def context(self, name: str) -> ListenContext:
        for ctx in self.contexts:
            if ctx.name == name:
                return ctx
        return self.contexts[0]

    def to_json(self) -> dict[str, object]:
        return {"language": self.language,
                "contexts": [{"name": c.name, "phrases": list(c.phrases)} for c in self.contexts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(data["language"], tuple(ListenContext(c["name"], tuple(c["phrases"])) for c in data["contexts"]))


# a call label's key (`ab_<experiment>`, `plan`): a short lower-case identifier
LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: how phrases are compared."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())
