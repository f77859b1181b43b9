"""The dialog policy: a flow file, interpreted as one state machine. No I/O.

disclose → flow.start → (ask → answer / lookup / transfer / end)* → hand off or goodbye.

The session feeds it events (a prompt finished, speech started, an utterance
was heard, a key was pressed, the caller went quiet, a lookup answered,
something broke) and performs the actions it returns. Rules it guarantees,
whatever the flow says:
- the disclosure plays first on every call and cannot be interrupted; what the
  caller says during it is acted on right after it;
- at every question a request for a person reaches one: at once when clear
  (or DTMF 0), after one short "Do you want me to connect you to a person?"
  when the bot is unsure — never "I didn't catch that";
- not understood twice, asked twice without answer, unhelpable twice: a person;
- nothing ends in silence: every path ends in a prompt, a handoff or a goodbye;
- the optional satisfaction survey (`[flow] csat_survey`) comes only after a
  conversation the bot completed, takes keys 1-5, and any other answer,
  silence or hanging up skips it (0 still reaches a person).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from voicebot.dialog.compile import context_for
from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.lang import GOODBYE, HUMAN, NO, YES
from voicebot.dialog.messages import (
    Action,
    End,
    Event,
    ExpectInput,
    Failed,
    Handoff,
    HandOver,
    Heard,
    KeyPressed,
    Lookup,
    LookupDone,
    NoInput,
    PromptDone,
    RecordingConsent,
    Say,
    SpeechBegan,
    StopPlayback,
    Survey,
)
from voicebot.dialog.question import Question, accept_threshold, edge
from voicebot.dialog.reading import Reading
from voicebot.dialog.understand import Interpretation
from voicebot.types import HandoffReason, Outcome, Topics, Transcript, Utterance

# the events and actions are re-exported: the session speaks to the policy through them
__all__ = [
    "Action", "End", "Event", "ExpectInput", "Failed", "HandOver", "Handoff", "Heard", "KeyPressed", "Lookup",
    "LookupDone", "NoInput", "PromptDone", "RecordingConsent", "Say", "SpeechBegan", "StopPlayback", "Survey",
    "Policy", "PolicyConfig", "State",
]


@dataclass(frozen=True)
class PolicyConfig:
    confidence_threshold: float = 0.6  # a node's ladder overrides it
    low_confidence_turns: int = 2
    no_input_turns: int = 2
    unresolved_turns: int = 2
    no_input_timeout_s: float = 6.0
    disclosure_text: str = ""  # "" = the language's text
    opt_out_key: str = ""  # named after the language's disclosure ("" = none)
    ask_recording_consent: bool = False  # after the disclosure (VOICEBOT_RECORDING=consent)


SURVEY_OFFERED = "offered"
RATINGS = "12345"
CONSENT = "recording"  # `confirming` while the recording question is open


class State(Enum):
    DISCLOSING = auto()
    PROMPTING = auto()
    LISTENING = auto()
    LOOKING_UP = auto()
    SURVEYING = auto()  # the conversation is complete; the survey is asked or awaited
    HANDING_OFF = auto()
    ENDING = auto()
    DONE = auto()


_FINAL = (State.HANDING_OFF, State.ENDING, State.DONE)
_TALKING = ("ask", "say", "answer", "lookup", "language")


@dataclass
class Policy:
    flow: Flow
    language: str
    config: PolicyConfig = field(default_factory=PolicyConfig)
    state: State = State.DISCLOSING
    node: str = ""
    handoff_reason: HandoffReason | None = None
    handoff_queue: str = ""
    answered: list[str] = field(default_factory=list)  # intents the bot answered itself
    slots: dict[str, str] = field(default_factory=dict)
    confirming: str = ""  # "human" or a slot name while a yes/no question is open
    lookup_error: str = ""  # why the last lookup failed, for the person who takes over
    survey: str = ""  # "" (not offered), then a Survey status
    _goodbye: str = ""  # the end node's prompt, said after the survey
    _prompt: Say | None = None
    _next_id: int = 0
    _held: list[Event] = field(default_factory=list)  # heard during the disclosure
    _keys: str = ""  # digits keyed for a slot
    _data: dict[str, Any] = field(default_factory=dict)  # the last lookup's answer
    _low: int = 0
    _quiet: int = 0
    _unresolved: int = 0

    # --- what the session asks (the question's own rules: dialog.question) ---------------
    @property
    def question(self) -> Question:
        """The question the caller is answering now."""
        return Question(self.flow, self.language, self._ask_node(), self.confirming,
                        self.config.confidence_threshold)

    def understand(self, text: str) -> Interpretation:
        """What `text` means at the current question (the session stores it with the utterance)."""
        return self.question.understand(text)

    def read(self, text: str, confidence: float) -> Reading:
        """The grammar recogniser's reading of what it heard at the current question."""
        return Reading(self.understand(text), confidence)

    def _read(self, u: Utterance) -> Reading:
        return self.read(u.text, u.confidence)

    def wants_second_opinion(self, reading: Reading) -> bool:
        return self.question.wants_second_opinion(reading)

    def settled(self, reading: Reading) -> bool:
        return self.question.settled(reading)

    def acts_alone(self, reading: Reading) -> bool:
        return self.question.acts_alone(reading)

    def reread(self, first: Reading, heard: Transcript, larger: bool = False,
               second: Transcript | None = None, last: bool = False) -> Reading:
        return self.question.reread(first, heard, larger, second, last)

    def wants_larger(self, first: Reading, heard: Transcript) -> bool:
        return self.question.wants_larger(first, heard)

    def opinion_check(self, text: str) -> str:
        return self.question.opinion_check(text)

    @property
    def opinion_prompt(self) -> str:
        return self.question.opinion_prompt()

    @property
    def opinion_topics(self) -> Topics:
        return self.question.opinion_topics()

    def opts_out(self, digit: str) -> bool:
        """Whether this key is the opt-out key here: everywhere, except while the caller
        keys in a number the flow asked for (an order number may hold a 9)."""
        if not digit or digit != self.config.opt_out_key:
            return False
        if self.state is State.SURVEYING:  # the survey's rating keys rate
            return digit not in RATINGS
        node = self._ask_node()
        keying = node is not None and bool(node.slot) and not self.confirming
        return self.state is State.DISCLOSING or not keying

    @property
    def listen_context(self) -> str:
        node = self._ask_node()
        return context_for(node, bool(self.confirming)) if node is not None else "open"

    @property
    def listen_node(self) -> Node | None:
        """The question the caller is answering now (its end-of-turn silences)."""
        return self._ask_node()

    @property
    def current_prompt(self) -> Say | None:
        return self._prompt

    def set_language(self, code: str) -> None:
        if code in self.flow.languages:
            self.language = code

    # --- events ------------------------------------------------------------------
    def disclosure_text(self) -> str:
        return self.config.disclosure_text or self.flow.disclosure(self.language, self.config.opt_out_key)

    def start(self) -> list[Action]:
        return [self._say("disclosure", self.disclosure_text(), interruptible=False,
                          state=State.DISCLOSING)]

    def step(self, event: Event) -> list[Action]:
        if self.state is State.DONE:
            return []
        if self.state is State.DISCLOSING:
            return self._while_disclosing(event)
        if isinstance(event, Failed):
            return self._failed()
        if isinstance(event, HandOver):
            return [] if self.state in _FINAL else self._handoff(event.reason)
        if isinstance(event, PromptDone):
            return self._prompt_done(event)
        if self.state in _FINAL:
            return []
        return self._while_listening(event)

    def _while_disclosing(self, event: Event) -> list[Action]:
        """Nothing interrupts the disclosure: what the caller does, a failure or a handover
        is held until it has played."""
        if isinstance(event, PromptDone):
            return self._prompt_done(event)
        if isinstance(event, Heard | KeyPressed | Failed | HandOver):
            self._held.append(event)
        return []

    def _while_listening(self, event: Event) -> list[Action]:
        """What the caller did at a question, a survey, a consent or during a lookup."""
        if self.state is State.SURVEYING:
            return self._survey_answer(event)
        if isinstance(event, LookupDone):
            return self._lookup_done(event)
        if self.state is State.LOOKING_UP:
            return self._key(event.digit) if isinstance(event, KeyPressed) and event.digit == "0" else []
        if self.confirming == CONSENT and isinstance(event, Heard | KeyPressed | NoInput):
            return self._consent_answer(event)
        if isinstance(event, SpeechBegan):
            return self._barge_in()
        if isinstance(event, Heard):
            return self._heard(event.utterance, event.reading or self._read(event.utterance))
        if isinstance(event, KeyPressed):
            return self._key(event.digit)
        return self._no_input()

    # --- prompts and nodes ---------------------------------------------------------
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
            return [Handoff(self.handoff_reason, self.handoff_queue)]
        if self.state is State.ENDING:
            self.state = State.DONE
            return [End(Outcome.COMPLETED)]
        if self.state is State.SURVEYING:
            return [ExpectInput(self.flow.csat_timeout_s)]
        node = self.flow.nodes[self.node]
        if node.type in ("say", "answer", "lookup") and not self.confirming:
            return self._enter(node.next)
        if event.interrupted:
            return []
        return self._listen()

    def _listen(self) -> list[Action]:
        self.state = State.LISTENING
        node = self._ask_node()
        hangover = node.hangover_ms if node is not None else None
        return [ExpectInput(self.config.no_input_timeout_s, self.listen_context, hangover)]

    def _after_disclosure(self) -> list[Action]:
        held, self._held = self._held, []
        self.node = self.flow.start
        self.state = State.LISTENING
        if any(isinstance(event, Failed) for event in held):
            return self._handoff(HandoffReason.SYSTEM_ERROR)
        for event in held:
            if isinstance(event, HandOver):
                return self._handoff(event.reason)
        for event in held:
            if isinstance(event, KeyPressed) and event.digit == "0":
                return self._handoff(HandoffReason.CALLER_REQUEST)
        readings = self._readings(held)
        for _, reading in readings:  # a clear request for a person said over the disclosure
            if reading.meaning.intent == HUMAN and reading.meaning.certain:
                return self._handoff(HandoffReason.CALLER_REQUEST)
        if self.config.ask_recording_consent:
            self._held, self.confirming = [e for e in held if isinstance(e, Heard)], CONSENT
            return [RecordingConsent("asked"), self._say("recording_consent")]  # heard again after
        return self._begin(readings)

    def _readings(self, events: list[Event]) -> list[tuple[Utterance, Reading]]:
        return [(e.utterance, e.reading or self._read(e.utterance)) for e in events if isinstance(e, Heard)]

    def _begin(self, readings: list[tuple[Utterance, Reading]]) -> list[Action]:
        """The flow's first question, answered at once by what was said over the disclosure."""
        self.node = self.flow.start
        if readings and self.flow.nodes[self.node].type == "ask":
            return self._heard(*readings[-1])
        return self._enter(self.flow.start)

    def _enter(self, name: str) -> list[Action]:
        node = self.flow.nodes[name]
        self.node, self.confirming, self._keys = name, "", ""
        if node.type == "transfer":
            reason = HandoffReason(node.reason)
            return self._handoff(reason, node.queue)
        if node.type == "end":
            if self.flow.csat_survey and not self.survey:
                return self._offer_survey(node.prompt or "goodbye")
            return [self._say(node.prompt or "goodbye", state=State.ENDING)]
        if node.type == "answer":
            self.answered.append(node.intent or node.name)
            self._unresolved = 0
        if node.type == "lookup":
            self.state = State.LOOKING_UP
            payload = {slot: self.slots.get(slot, "") for slot in node.send}
            return [Lookup(node.url, payload, node.timeout_s)]
        return [self._say(node.prompt)]

    def _lookup_done(self, event: LookupDone) -> list[Action]:
        if self.state is not State.LOOKING_UP:
            return []
        node = self.flow.nodes[self.node]
        if not event.ok:
            self.lookup_error = event.detail
            return self._enter(node.error) if node.error else self._handoff(HandoffReason.LOOKUP_FAILED)
        self._data = dict(event.data)
        return [self._say(node.prompt)]

    def _ask_node(self) -> Node | None:
        """The question the caller is answering: the current node, or, while an
        answer is still playing, the question that follows it."""
        name, hops = self.node or self.flow.start, 0  # during the disclosure: the first question
        while name and hops < 4:
            node = self.flow.nodes.get(name)
            if node is None or node.type in ("ask", "language"):
                return node
            if node.type not in ("say", "answer"):
                return None
            name, hops = node.next, hops + 1
        return None

    # --- the caller ------------------------------------------------------------------
    def _barge_in(self) -> list[Action]:
        prompt = self._prompt
        if self.state is State.PROMPTING and prompt is not None and prompt.interruptible:
            self._prompt = None
            self.state = State.LISTENING
            node = self._ask_node()
            if node is not None and node.name != self.node:
                self.node = node.name  # the answer was cut short: the caller moved on
            return [StopPlayback()]
        return []

    def _heard(self, u: Utterance, reading: Reading) -> list[Action]:
        node = self._ask_node()
        if node is None:
            return []
        self._quiet = 0
        if self.confirming:
            return self._confirm_answer(reading, node)
        accept = accept_threshold(node, self.config.confidence_threshold)
        heard, confidence = reading.meaning, reading.confidence
        if heard.intent == HUMAN:
            if confidence >= max(accept, node.ladder.transfer) and heard.certain:
                return self._handoff(HandoffReason.CALLER_REQUEST, node.queue)
            if confidence >= node.ladder.confirm:
                return self._ask_confirm(HUMAN)
        if (not u.text.strip() and reading.heard is None) or confidence < accept:
            return self._not_understood()
        if node.slot or node.type == "language":
            self._low = 0
            return self._slot_heard(node, heard.digits) if node.slot else []
        if heard.intent is None:
            return self._nothing_known(node)
        self._low = 0
        return self._route(node, heard.intent)

    def _route(self, node: Node, intent: str) -> list[Action]:
        """An understood intent: the node's edge for it, else its no-match edge (or a person,
        once the caller has asked for what the flow cannot do too often)."""
        target = edge(node, intent)
        if target is not None:
            return self._enter(target)
        self._unresolved += 1
        if self._unresolved >= self.config.unresolved_turns:
            return self._handoff(HandoffReason.UNRESOLVED, node.queue)
        return self._enter(node.no_match)

    def _ask_confirm(self, what: str, value: str = "") -> list[Action]:
        self.confirming = what
        if what == HUMAN:
            return [self._say("confirm_human")]
        text = self.flow.prompt("confirm_slot", self.language).format(value=" ".join(value))
        return [self._say("confirm_slot", text)]

    def _confirm_answer(self, reading: Reading, node: Node) -> list[Action]:
        what, self.confirming = self.confirming, ""
        meaning, confidence = reading.meaning, reading.confidence
        yes = meaning.intent == YES or (what == HUMAN and meaning.intent == HUMAN)
        if yes and confidence >= node.ladder.confirm:
            return self._confirmed(what, node)
        if meaning.intent in (NO, GOODBYE) and confidence >= node.ladder.confirm:
            return self._enter(node.name)  # ask the question again
        if what == HUMAN and meaning.intent == HUMAN:
            return self._handoff(HandoffReason.CALLER_REQUEST, node.queue)
        self.confirming = what
        return self._not_understood()

    def _confirmed(self, what: str, node: Node) -> list[Action]:
        if what == HUMAN:
            return self._handoff(HandoffReason.CALLER_REQUEST, node.queue)
        return self._enter(node.next)

    def _slot_heard(self, node: Node, digits: str) -> list[Action]:
        slot = self.flow.slots[node.slot]
        if not slot.valid(digits):
            return self._not_understood("slot_invalid")
        self.slots[slot.name] = digits
        if slot.confirm:
            return self._ask_confirm(slot.name, digits)
        return self._enter(node.next)

    def _nothing_known(self, node: Node) -> list[Action]:
        """Clear words holding nothing the flow knows ("what time is the game tonight"):
        the no-match edge, counted with the turns not understood, so the caller is
        asked once more and then put through as `low_confidence`."""
        self._low += 1
        if self._low >= self.config.low_confidence_turns:
            return self._handoff(HandoffReason.LOW_CONFIDENCE, node.queue)
        return self._enter(node.no_match)

    def _not_understood(self, prompt: str = "didnt_catch") -> list[Action]:
        self._low += 1
        if self._low >= self.config.low_confidence_turns:
            node = self._ask_node()
            return self._handoff(HandoffReason.LOW_CONFIDENCE, node.queue if node else "")
        return [self._say(prompt)]

    def _key(self, digit: str) -> list[Action]:
        node = self._ask_node()
        if node is None:
            return self._handoff(HandoffReason.CALLER_REQUEST) if digit == "0" else []
        if node.slot and (self._keys or digit != "0") and not self.confirming:
            return self._slot_key(node, digit)
        if digit == "0":
            return self._handoff(HandoffReason.CALLER_REQUEST, node.queue)
        if self.confirming:
            return self._confirm_key(digit, node)
        if node.type == "language":
            if digit in node.dtmf:
                self.set_language(node.dtmf[digit])
                return self._enter(node.next)
            return []
        target = node.dtmf.get(digit)
        if target is None:
            return []
        return self._enter(node.on.get(target, target))

    def _confirm_key(self, digit: str, node: Node) -> list[Action]:
        if digit == "1":
            what, self.confirming = self.confirming, ""
            return self._confirmed(what, node)
        if digit == "2":
            return self._enter(node.name)
        return []

    def _slot_key(self, node: Node, digit: str) -> list[Action]:
        slot = self.flow.slots[node.slot]
        if digit != "#":
            self._keys += digit
        if digit == "#" or len(self._keys) >= slot.max_digits:
            keys, self._keys = self._keys, ""
            return self._slot_heard(node, keys)
        return []

    def _no_input(self) -> list[Action]:
        if self.state is not State.LISTENING:
            return []
        node = self._ask_node()
        if node is None:
            return []
        if self._keys:
            keys, self._keys = self._keys, ""
            return self._slot_heard(node, keys)
        if self.confirming:
            self.confirming = ""
            return self._enter(node.name)
        if node.type == "language":
            return self._enter(node.next)
        target = self.flow.nodes[node.no_input]
        if target.type == "end":
            return self._enter(target.name)
        self._quiet += 1
        if self._quiet >= self.config.no_input_turns:
            return self._handoff(HandoffReason.NO_INPUT, node.queue)
        return self._enter(node.no_input)

    # --- the satisfaction survey ----------------------------------------------------------
    def _offer_survey(self, goodbye: str) -> list[Action]:
        self.survey, self._goodbye = SURVEY_OFFERED, goodbye
        return [Survey(SURVEY_OFFERED), self._say("csat_survey", state=State.SURVEYING)]

    def _survey_answer(self, event: Event) -> list[Action]:
        """Keys 1-5 rate; 0 asks for a person; any other key, silence or speech skips."""
        if isinstance(event, KeyPressed):
            if event.digit == "0":
                return self._handoff(HandoffReason.CALLER_REQUEST)
            if event.digit in RATINGS:
                return self._survey_done("rated", int(event.digit))
            return self._survey_done("other_key")
        if isinstance(event, NoInput):
            return self._survey_done("silence")
        if isinstance(event, Heard):
            u = event.utterance
            if not u.text.strip() or u.confidence < self.config.confidence_threshold:
                # noise on the line: keep waiting (the timer stopped when it began)
                return [] if self._prompt is not None else [ExpectInput(self.flow.csat_timeout_s)]
            heard = self.understand(u.text)
            if heard.intent == HUMAN and heard.certain:
                return self._handoff(HandoffReason.CALLER_REQUEST)
            return self._survey_done("spoke")
        return []

    def _survey_done(self, status: str, rating: int | None = None) -> list[Action]:
        self.survey = status
        return [Survey(status, rating), self._say(self._goodbye, state=State.ENDING)]

    def outcome_if_left(self) -> Outcome | None:
        """The outcome of a call the caller leaves now (None: already decided). During
        the survey the bot's part is over, so hanging up there completes the call."""
        if self.state is State.DONE:
            return None
        if self.survey and self.handoff_reason is None:
            return Outcome.COMPLETED
        return Outcome.ABANDONED

    # --- recording consent ------------------------------------------------------------
    def _consent_answer(self, event: Heard | KeyPressed | NoInput) -> list[Action]:
        """Only DTMF 1 or a yes allows recording; a person is reachable here as anywhere."""
        if isinstance(event, NoInput) and self.state is not State.LISTENING:
            return []
        if isinstance(event, KeyPressed) and self.opts_out(event.digit):
            return []  # the session hands the call over (HandOver follows)
        answer, person = "no_answer", False
        if isinstance(event, KeyPressed):
            person = event.digit == "0"
            answer = "given" if event.digit == "1" else "no_answer" if person else "refused"
        elif isinstance(event, Heard):
            reading, node = event.reading or self._read(event.utterance), self._ask_node()
            meaning = reading.meaning
            sure = node is None or reading.confidence >= node.ladder.confirm
            person = meaning.intent == HUMAN and sure
            if meaning.intent == YES and sure:
                answer = "given"
            elif meaning.intent in (NO, GOODBYE) and sure:
                answer = "refused"
        held, self._held, self.confirming = self._held, [], ""
        decided: list[Action] = [RecordingConsent(answer)]
        if person:
            return decided + self._handoff(HandoffReason.CALLER_REQUEST)
        return decided + self._begin(self._readings(held))

    # --- endings -----------------------------------------------------------------------
    def _failed(self) -> list[Action]:
        if self.state is State.HANDING_OFF:  # the handoff line itself failed: transfer silently
            self.state = State.DONE
            assert self.handoff_reason is not None
            return [Handoff(self.handoff_reason, self.handoff_queue)]
        return self._handoff(HandoffReason.SYSTEM_ERROR)

    def _handoff(self, reason: HandoffReason, queue: str = "") -> list[Action]:
        unanswered: list[Action] = [RecordingConsent("no_answer")] if self.confirming == CONSENT else []
        self.handoff_reason = reason
        self.handoff_queue = queue
        if self.survey == SURVEY_OFFERED:  # a person now: the survey ends unanswered
            asked = reason in (HandoffReason.CALLER_REQUEST, HandoffReason.OPTED_OUT)
            self.survey = "person" if asked else "interrupted"
            unanswered.append(Survey(self.survey))
        self.confirming = ""
        return [*unanswered, self._say("handoff", interruptible=False, state=State.HANDING_OFF)]

    def _say(self, name: str, text: str | None = None, *, interruptible: bool = True,
             state: State = State.PROMPTING) -> Say:
        self._next_id += 1
        self.state = state
        if text is None:
            fields = {k: " ".join(v) for k, v in self.slots.items()} | {k: str(v) for k, v in self._data.items()}
            text = self.flow.prompt(name, self.language).format_map(_Blank(fields))
        self._prompt = Say(self._next_id, name, text, interruptible)
        return self._prompt


class _Blank(dict[str, str]):
    """A template field nobody filled is said as nothing, not as '{field}'."""

    def __missing__(self, key: str) -> str:
        return ""
