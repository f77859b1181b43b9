"""What an utterance means and how sure the bot is: the grammar's reading, and
the second opinion of a free-form engine where the grammar may be wrong.

The grammar recogniser forces any speech into its nearest phrase, so its
confidence is the only thing that tells a caller's words from a near miss. A
free-form engine writes what was said. Its words decide when the text matcher
finds a whole intent in them (a request for a person still needs a clear
request frame, else the bot asks). When both engines heard a request for a
person, the caller is put through even if each alone was unsure, unless the
words tell about someone ("my agent number"). When the free-form engine is
confident of words that hold no intent, the caller said something else: the
grammar's near miss is dropped, and the caller is asked again. An unsure
request for a person needs less, from two engines: the fallback's fluent words
with no person-word in them, after the second opinion's said the same. But a
request for a person the grammar was sure of is never dropped: the bot asks
about it. A person only the fallback hears is asked about, never put through (a
clear request it hears where the grammar heard one too is two engines agreeing), and
one of the flow's requests it hears only in words it is unsure of (below
FLUENT) is not acted on: the caller is asked again.
The free-form engine also scores the grammar's words against the audio
(Transcript.fit): at an open question, words that fit far worse than its own
(MISFIT, the worse of both engines) are other speech forced into a phrase,
dropped as confident other speech is. And a sentence encoder scores the
engine's words against the flow's examples (Transcript.closeness): words that
hold an intent's key word but mean something else (UNLIKE, `unlike`) are
other speech too, unless the grammar heard the same intent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from voicebot.dialog.lang import BUILTIN_INTENTS, HUMAN
from voicebot.dialog.understand import Interpretation
from voicebot.types import Transcript

GRAMMAR, SECOND = "grammar", "second"
SURE = 1.0  # the confidence a free-form intent is acted on with
# A free-form transcript this confident and holding no intent is other speech
# (dev set: out-of-domain sentences 0.85-0.97; mangled requests 0.35-0.80).
OTHER_SPEECH = 0.8
# Fluent words: a grammar's unsure request for a person, when the free-form
# engines heard this confidently a sentence with no person-word in it, was other
# speech forced into a person phrase (dev sets: 8 out-of-domain and person-word
# sentences at 0.53-0.73, no request for a person).
FLUENT = 0.5
# The grammar's words fit the audio this much worse than the free-form engine's
# own (Transcript.fit): other speech forced into a phrase (dev set, first asks:
# tiny.en puts 13 of 28 forced readings below it and none of 36 right ones).
MISFIT = -5.5
# A grammar's request for a person this unsure is no more than free-form words without
# anyone in them, fluent or not: the fallback decides (dev sets: out-of-domain speech
# forced into a person phrase at 0.20-0.38; requests the free-form engines heard no
# one in, 0.85 and above).
WEAK_PERSON = 0.4
# The free-form words' meaning this far from every example of the flow intent the text
# matcher found in them (Transcript.closeness, sentence similarity): a key word said in
# another sense (dev sets: "I'd like to order a birthday cake" 0.44-0.47 against the
# order examples; routine requests the grammar did not hear 0.55 and above).
UNLIKE = 0.5


@dataclass(frozen=True)
class Reading:
    meaning: Interpretation
    confidence: float  # what the node's confidence ladder compares
    by: str = GRAMMAR  # GRAMMAR | SECOND: whose words the meaning comes from
    heard: Transcript | None = None  # the second opinion's words, when it decided


def second_reading(first: Reading, said: Interpretation, heard: Transcript, sure: bool = False,
                   larger: bool = False, checked: bool = False, other: bool = False) -> Reading:
    """`first` as changed by a free-form engine that heard `heard` (meaning `said`).
    `sure`: the grammar was sure enough of `first` (a person) to act on it alone;
    then another intent outweighs it, and words that tell about someone or
    confidently hold no one make the bot ask rather than put the caller through.
    `larger`: the words are the fallback's, asked after the second opinion
    left the turn not understood or contradicted the grammar's unsure person.
    `checked`: the engine's fit of the grammar's words counts (an open question).
    `other`: the words mean something the flow does not know (`unlike`), however sure
    the engine was of them: weighed as confident other speech."""
    person = first.meaning.intent == HUMAN
    if larger and said.intent not in (None, *BUILTIN_INTENTS) and heard.confidence < FLUENT:
        # the last resort's guess at one of the flow's requests (French written as "email
        # line, parcel, the mark, action.", 0.21): a wrong answer costs more than a reprompt
        said = Interpretation(None, mention=said.mention)
    if said.intent is not None:
        agree = person and first.meaning.certain and said.intent == HUMAN and not said.mention
        if larger and said.intent == HUMAN and not (agree and said.certain):
            # the last resort, where two engines disagreed: a person it hears is asked about,
            # unless it makes a clear request of what the grammar heard as one
            return Reading(replace(said, certain=False), SURE, SECOND, heard)
        if agree:
            # two engines each heard a request for a person: a clear one (words that
            # tell about someone, "my agent number", are asked about, even after a sure grammar)
            return Reading(replace(said, certain=True), SURE, SECOND, heard)
        return Reading(said, SURE, SECOND, heard)
    if larger and contradicts(first, said, heard, sure):
        return Reading(Interpretation(None), 0.0, SECOND, heard)
    confident = other or (not heard.empty and heard.confidence >= OTHER_SPEECH)
    misfit = checked and first.meaning.intent is not None and heard.fit is not None and heard.fit < MISFIT
    if sure and person and (said.mention or confident or misfit):
        # a clear request is never dropped for a reprompt: in words that tell about
        # someone, confident words without anyone, or where the grammar's words do
        # not fit the audio, the bot asks instead
        return Reading(Interpretation(HUMAN, certain=False, mention=said.mention), SURE, SECOND, heard)
    if confident or misfit:
        return Reading(Interpretation(None), 0.0, SECOND, heard)
    return first


def unlike(said: Interpretation, heard: Transcript, first: Reading) -> bool:
    """Whether the words' meaning is far from every example of the intent the text
    matcher found in them (`said`), and the grammar did not hear that intent too (two
    engines agreeing outweigh the sentence's meaning): other speech that holds a key
    word. Such words are no intent, and, like confident other speech, they leave the
    grammar's reading standing only where it was a sure request for a person, then
    asked about: the grammar's near miss ("i'd like to talk with a live agent" for a
    cake order) is no more likely than their intent was."""
    close = dict(heard.closeness).get(said.intent or "")
    return close is not None and close < UNLIKE and first.meaning.intent != said.intent


def contradicts(first: Reading, said: Interpretation, heard: Transcript, sure: bool) -> bool:
    """Fluent words with no person-word in them (any such words, against a grammar
    under WEAK_PERSON) against the grammar's unsure request
    for a person: other speech the grammar forced into a person phrase, or a request
    the free-form engine misheard. One engine's fluent words are not enough to drop
    a request (held out, tiny.en's alone: 61 -> 55 of 72 reached a person); the fallback's agreeing are."""
    return first.meaning.intent == HUMAN and not sure and said.intent is None and not said.mention \
        and not heard.empty and (heard.confidence >= FLUENT or first.confidence < WEAK_PERSON)


def wants_larger(first: Reading, reread: Reading, said: Interpretation, heard: Transcript, sure: bool) -> bool:
    """Whether the fallback is asked after the second opinion: the turn is still not
    understood, or the second opinion's words contradict the grammar's unsure person."""
    return reread.meaning.intent is None or contradicts(first, said, heard, sure)
