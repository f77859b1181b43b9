"""The dialog policy: one small state machine, no I/O, no asyncio.

disclose → menu → listen → answer / reprompt → hand off / goodbye.

The session feeds it events (a prompt finished, speech started, an utterance
was recognised, a key was pressed, the caller went quiet, something broke)
and performs the actions it returns. Rules it guarantees:
- the disclosure plays first on every call and cannot be interrupted; what the
  caller says during it is acted on right after it;
- a request for a person (speech or DTMF 0) always leads to a handoff;
- nothing ends in silence: every path ends in an answer prompt, a handoff
  line + handoff, or a goodbye.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

from voicebot.dialog import lang
from voicebot.dialog.lang import LanguagePack
from voicebot.types import HandoffReason, Outcome, Utterance


@dataclass(frozen=True)
class PolicyConfig:
    confidence_threshold: float = 0.6
    low_confidence_turns: int = 2
    no_input_turns: int = 2
    unresolved_turns: int = 2
    no_input_timeout_s: float = 6.0
    disclosure_text: str = ""  # "" = the language pack's text


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
    """The service, not the conversation, needs a human to take the call
    (over capacity, time limit, media stopped, shutdown)."""

    reason: HandoffReason


Event = PromptDone | SpeechBegan | Heard | KeyPressed | NoInput | Failed | HandOver


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


@dataclass(frozen=True)
class Handoff:
    reason: HandoffReason


@dataclass(frozen=True)
class End:
    outcome: Outcome


Action = Say | StopPlayback | ExpectInput | Handoff | End


class State(Enum):
    DISCLOSING = auto()
    PROMPTING = auto()
    LISTENING = auto()
    HANDING_OFF = auto()
    ENDING = auto()
    DONE = auto()


_ANSWERS = {lang.ORDER_STATUS: "order_status", lang.PASSWORD_RESET: "password_reset"}
_FINAL = (State.HANDING_OFF, State.ENDING, State.DONE)


@dataclass
class Policy:
    pack: LanguagePack
    config: PolicyConfig = field(default_factory=PolicyConfig)
    state: State = State.DISCLOSING
    handoff_reason: HandoffReason | None = None
    intents: list[str] = field(default_factory=list)  # routine intents seen, in order
    answered: list[str] = field(default_factory=list)  # answers the bot gave
    _prompt: Say | None = None
    _next_id: int = 0
    _held: list[Event] = field(default_factory=list)  # heard during the disclosure
    _low: int = 0
    _quiet: int = 0
    _unresolved: int = 0

    def start(self) -> list[Action]:
        text = self.config.disclosure_text or self.pack.prompts["disclosure"]
        return [self._say("disclosure", text, interruptible=False, state=State.DISCLOSING)]

    def step(self, event: Event) -> list[Action]:
        if self.state is State.DONE:
            return []
        if isinstance(event, Failed) and self.state is not State.DISCLOSING:
            return self._failed()
        if isinstance(event, HandOver) and self.state is not State.DISCLOSING:
            return [] if self.state in _FINAL else self._handoff(event.reason)
        if isinstance(event, PromptDone):
            return self._prompt_done(event)
        if self.state is State.DISCLOSING:
            if isinstance(event, Heard | KeyPressed | Failed | HandOver):
                self._held.append(event)
            return []
        if self.state in _FINAL:
            return []
        if isinstance(event, SpeechBegan):
            return self._barge_in()
        if isinstance(event, Heard):
            return self._heard(event.utterance)
        if isinstance(event, KeyPressed):
            return self._key(event.digit)
        return self._no_input()

    @property
    def current_prompt(self) -> Say | None:
        return self._prompt

    # --- transitions ---------------------------------------------------------
    def _prompt_done(self, event: PromptDone) -> list[Action]:
        prompt = self._prompt
        if prompt is None or prompt.prompt_id != event.prompt_id:
            return []  # a superseded prompt reporting late
        self._prompt = None
        if prompt.name == "disclosure":
            return self._after_disclosure()
        if self.state is State.HANDING_OFF:
            self.state = State.DONE
            assert self.handoff_reason is not None
            return [Handoff(self.handoff_reason)]
        if self.state is State.ENDING:
            self.state = State.DONE
            return [End(Outcome.COMPLETED)]
        if prompt.name in _ANSWERS.values():
            return [self._say("anything_else")]
        if event.interrupted:
            return []
        self.state = State.LISTENING
        return [ExpectInput(self.config.no_input_timeout_s)]

    def _after_disclosure(self) -> list[Action]:
        held, self._held = self._held, []
        self.state = State.LISTENING
        if any(isinstance(event, Failed) for event in held):
            return self._handoff(HandoffReason.SYSTEM_ERROR)
        for event in held:
            if isinstance(event, HandOver):
                return self._handoff(event.reason)
        for event in held:
            if self._is_person_request(event):
                return self._handoff(HandoffReason.CALLER_REQUEST)
        if held and isinstance(held[-1], Heard):
            return self._heard(held[-1].utterance)
        return [self._say("menu")]

    def _is_person_request(self, event: Event) -> bool:
        if isinstance(event, KeyPressed):
            return event.digit == "0"
        if isinstance(event, Heard):
            u = event.utterance
            return u.confidence >= self.config.confidence_threshold and u.intent == lang.HUMAN
        return False

    def _barge_in(self) -> list[Action]:
        prompt = self._prompt
        if self.state is State.PROMPTING and prompt is not None and prompt.interruptible:
            self._prompt = None
            self.state = State.LISTENING
            return [StopPlayback()]
        return []

    def _heard(self, u: Utterance) -> list[Action]:
        if u.confidence < self.config.confidence_threshold or not u.text.strip():
            self._low += 1
            if self._low >= self.config.low_confidence_turns:
                return self._handoff(HandoffReason.LOW_CONFIDENCE)
            return [self._say("didnt_catch")]
        self._low = self._quiet = 0
        if u.intent == lang.HUMAN:
            return self._handoff(HandoffReason.CALLER_REQUEST)
        if u.intent in _ANSWERS:
            self.intents.append(u.intent)
            self.answered.append(u.intent)
            self._unresolved = 0
            return [self._say(_ANSWERS[u.intent])]
        if u.intent == lang.GOODBYE:
            return [self._say("goodbye", state=State.ENDING)]
        if u.intent == lang.YES:
            return [self._say("menu")]
        self._unresolved += 1
        if self._unresolved >= self.config.unresolved_turns:
            return self._handoff(HandoffReason.UNRESOLVED)
        return [self._say("unresolved")]

    def _key(self, digit: str) -> list[Action]:
        if digit == "0":
            return self._handoff(HandoffReason.CALLER_REQUEST)
        return []

    def _no_input(self) -> list[Action]:
        if self.state is not State.LISTENING:
            return []
        if self.answered:
            return [self._say("goodbye", state=State.ENDING)]
        self._quiet += 1
        if self._quiet >= self.config.no_input_turns:
            return self._handoff(HandoffReason.NO_INPUT)
        return [self._say("no_input")]

    def _failed(self) -> list[Action]:
        if self.state is State.DONE:
            return []
        if self.state is State.HANDING_OFF:  # the handoff line itself failed: transfer silently
            self.state = State.DONE
            assert self.handoff_reason is not None
            return [Handoff(self.handoff_reason)]
        return self._handoff(HandoffReason.SYSTEM_ERROR)

    def _handoff(self, reason: HandoffReason) -> list[Action]:
        self.handoff_reason = reason
        return [self._say("handoff", interruptible=False, state=State.HANDING_OFF)]

    def _say(
        self, name: str, text: str | None = None, *, interruptible: bool = True,
        state: State = State.PROMPTING,
    ) -> Say:
        self._next_id += 1
        self.state = state
        self._prompt = Say(self._next_id, name, text or self.pack.prompts[name], interruptible)
        return self._prompt
