"""The question a caller is answering, and how sure the bot must be of their words
there: what they mean, whether a free-form engine is asked for its opinion, and
how that opinion changes the grammar's reading. Pure: the policy builds one for
each moment of the call (`Policy.question`); the session asks through the policy.

The second opinion is asked about every answer to an open question (not a
slot or a language choice), however sure the grammar is: a grammar forces
other speech into its nearest phrase, often with a confidence it would act on
("I'm looking for a plumber" heard as "looking for an order", 0.63), so a sure
reading is checked like an unsure one; and at "do you want a person?" unless
the answer is a sure yes (a yes heard as "no" sends a caller who asked for
someone back to the menu).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.lang import GOODBYE, HUMAN, NO, PACKS, YES
from voicebot.dialog.reading import FLUENT, Reading, second_reading, unlike, wants_larger
from voicebot.dialog.understand import Interpretation, example_sentences, interpret
from voicebot.types import Topics, Transcript


def accept_threshold(node: Node, default: float) -> float:
    """The node's own accept threshold, else the configured one."""
    return node.ladder.accept if node.ladder.accept is not None else default


def edge(node: Node, intent: str) -> str | None:
    """The node an intent leads to from `node` (a goodbye where only "no" has an edge takes it)."""
    target = node.on.get(intent)
    return node.on.get(NO) if target is None and intent == GOODBYE else target


def flow_topics(flow: Flow, language: str) -> list[Topics]:
    """What the free-form words are compared with at each of the flow's open questions."""
    asks = [Question(flow, language, node) for node in flow.nodes.values() if node.type == "ask" and node.on]
    return [topics for topics in (q.opinion_topics() for q in asks) if topics]


@dataclass(frozen=True)
class Question:
    flow: Flow
    language: str
    node: Node | None  # the question asked (None: none is open)
    confirming: str = ""  # "human" or a slot name while a yes/no question is open
    threshold: float = 0.6  # the configured accept threshold, where the node sets none

    def understand(self, text: str) -> Interpretation:
        """What `text` means here."""
        if not text.strip():
            return Interpretation(None)
        node = self.node
        names = list(node.on) if node is not None else []
        intents = [self.flow.intents[n] for n in names if n in self.flow.intents]
        answers = node is None or bool(self.confirming) or bool(node.slot) or YES in names or NO in names
        return interpret(text, PACKS[self.language], intents, answers)

    def wants_second_opinion(self, reading: Reading) -> bool:
        """Whether a free-form engine is asked about the grammar's reading before it is acted on."""
        node = self.node
        if node is None or node.slot or node.type != "ask" or not node.on:
            return False
        if self.confirming:
            sure_yes = reading.meaning.intent in (YES, HUMAN) and reading.confidence >= self._accept(node)
            return self.confirming == HUMAN and not sure_yes
        return True

    def settled(self, reading: Reading) -> bool:
        """Whether the grammar alone is sure of its reading: an intent at or over the
        question's accept threshold, other than a request for a person or an answer that
        ends the call (where it forces other speech most, and a mistake costs most), or
        any intent where no second opinion is asked. A joined turn so read is not decoded
        again in parts (TurnListener.result): that costs every caller in a burst."""
        node, intent = self.node, reading.meaning.intent
        if intent is None:
            return False
        if not self.wants_second_opinion(reading):
            return True
        if node is None or self.confirming or intent == HUMAN or self._ends_call(node, intent):
            return False
        return reading.confidence >= self._accept(node)

    def acts_alone(self, reading: Reading) -> bool:
        """Whether the grammar's reading, without a second opinion, would be acted on
        (an intent at or over the accept threshold; for a person, a clear request)
        rather than asked for again. A clear request for a person under the transfer
        rung is asked about in one short question that reaches a person on a yes, so
        it counts as acted on: it keeps the usual budget (tried otherwise, held out:
        the burst's answers came ~0.3 s later and no more were right)."""
        intent = reading.meaning.intent
        return intent is not None and self._accepted(reading) and (intent != HUMAN or reading.meaning.certain)

    def reread(self, first: Reading, heard: Transcript, larger: bool = False,
               second: Transcript | None = None, last: bool = False) -> Reading:
        """`first` with a free-form engine's opinion of the same audio (`larger`: the
        fallback's, `second` then the second opinion's words before it: the grammar's
        words fit as badly as either engine found). `last`: no fallback will be asked
        (none serves this language): an unsure yes over an unsure no is weighed as the
        fallback's would be."""
        if second is not None and second.fit is not None and (heard.fit is None or second.fit < heard.fit):
            heard = replace(heard, fit=second.fit)
        said, other = self._said(first, heard)
        final = larger or last
        if self._unsure_yes_over_no(first, said, heard) and (not final or self._accepted(first)):
            # the fallback asked about it heard a yes it is as unsure of: the grammar's sure no stands
            return first
        return second_reading(first, said, heard, self._sure_person(first), larger, checked=not self.confirming,
                              other=other)

    def wants_larger(self, first: Reading, heard: Transcript) -> bool:
        """Whether the fallback model is asked after the second opinion heard `heard`."""
        said, other = self._said(first, heard)
        if self._unsure_yes_over_no(first, said, heard):
            return True
        reread = second_reading(first, said, heard, self._sure_person(first), checked=not self.confirming,
                                other=other)
        return wants_larger(first, reread, said, heard, self._sure_person(first))

    def opinion_check(self, text: str) -> str:
        """The grammar's words a free-form engine scores against the audio (Transcript.fit):
        at an open question, where other speech is forced into a phrase; not at a yes/no."""
        return "" if self.confirming else text

    def opinion_prompt(self) -> str:
        """Words to steer the free-form engine toward what callers say here."""
        if self.confirming == HUMAN:  # the question itself is what the answer follows
            return self.flow.prompt("confirm_human", self.language)
        intents = [self.flow.intents[n] for n in (self.node.on if self.node else ()) if n in self.flow.intents]
        topics = [k for intent in intents for k in intent.keywords.get(self.language, ())]
        return PACKS[self.language].opinion_prompt(topics)

    def opinion_topics(self) -> Topics:
        """The flow's intents here, each with its example sentences: what the free-form
        words' meaning is compared with (Transcript.closeness). None at a yes/no."""
        if self.confirming or self.node is None:
            return ()
        intents = [self.flow.intents[n] for n in self.node.on if n in self.flow.intents]
        return tuple((i.name, example_sentences(i.examples.get(self.language, ()))) for i in intents)

    def _said(self, first: Reading, heard: Transcript) -> tuple[Interpretation, bool]:
        """What the free-form words mean here, and whether they are other speech that
        holds a key word (reading.unlike: then they mean no intent)."""
        said = self.understand(heard.text)
        if unlike(said, heard, first):
            return Interpretation(None, mention=said.mention, digits=said.digits), True
        return said, False

    def _unsure_yes_over_no(self, first: Reading, said: Interpretation, heard: Transcript) -> bool:
        """At "do you want a person?": the grammar heard a no, the free-form engine a yes
        in words it is unsure of ("nah" heard as "Yeah, good, good, good"). A no heard
        as yes transfers someone who asked for no one: the fallback decides, and its
        yes as unsure does not outweigh a no the grammar heard at its accept threshold."""
        node = self.node
        return self.confirming == HUMAN and node is not None and first.meaning.intent in (NO, GOODBYE) \
            and first.confidence >= node.ladder.confirm and said.intent in (YES, HUMAN) \
            and heard.confidence < FLUENT

    def _ends_call(self, node: Node, intent: str) -> bool:
        target = edge(node, intent)
        return target is not None and self.flow.nodes[target].type == "end"

    def _accept(self, node: Node) -> float:
        return accept_threshold(node, self.threshold)

    def _accepted(self, reading: Reading) -> bool:
        """At or above the question's accept threshold."""
        return self.node is not None and reading.confidence >= self._accept(self.node)

    def _sure_person(self, reading: Reading) -> bool:
        node = self.node
        return node is not None and not self.confirming and reading.meaning.intent == HUMAN \
            and reading.meaning.certain and reading.confidence >= max(self._accept(node), node.ladder.transfer)
