"""Adaptive end of turn: how much silence ends the caller's turn.

The endpointer reports a short pause (`complete_ms` of silence inside an
utterance, and again every `complete_ms` while it lasts) and the recogniser
is asked what it has heard so far. A whole
phrase of what the question listens for (a request for a person, a yes or a
no, a slot's digits, an intent's example) ends the turn there; the beginning
of a phrase ("I want to speak to…") lets the pause run to `mid_phrase_ms`
(unless the second opinion heard the same start and how it ended: `goes_past`),
as do the second opinion's words there when they begin a request and trail off
(`trails_off`), unless those words are a fluent sentence of another start
(`another_sentence`: the grammar forced other speech into a phrase's beginning);
anything else (a guess, other speech, no answer in time) ends the turn after
the question's `hangover_ms`, as a fixed hangover would. `complete_ms = 0`
turns it off: every turn ends after `hangover_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from difflib import Match, SequenceMatcher

from voicebot.dialog.reading import FLUENT  # free-form words this sure are a sentence, not a guess
from voicebot.dialog.understand import Interpretation
from voicebot.types import Partial, normalise

# A whole phrase heard with less than this is too much of a guess to cut the
# caller off: at 0.25 a LibriVox sentence (audio_fixtures, out of domain) was
# cut at a pause into "could i talk to an real human" and sent to a person.
COMPLETE_CONFIDENCE = 0.5
# The beginning of a phrase heard with less is taken for other speech (measured mid-utterance
# on audio_fixtures/turns: real prefixes 0.12-0.98, a voicemail greeting 0.01-0.15).
MID_PHRASE_CONFIDENCE = 0.1


# Of the grammar's beginning of a phrase, the share of words free-form words
# must hold in order to have heard the same start (one word in three may
# differ), and at least so many words: "i need an" against "I need to reset"
# shares two, too few to say that both engines read one sentence.
SAME_START = 2 / 3
SAME_START_WORDS = 4

# Words a sentence goes on after: free-form words that end in one are a caller
# drawing breath, not a finished request ("I want to talk to someone about ...").
# English only, as the second opinion is.
GOES_ON = frozenset((
    "a", "about", "an", "and", "as", "at", "because", "but", "by", "for", "from", "i", "if", "in",
    "is", "like", "my", "of", "on", "or", "so", "than", "that", "the", "then", "to", "uh", "um",
    "was", "when", "with", "your"))


@dataclass(frozen=True)
class TurnTiming:
    hangover_ms: int = 500  # silence that ends a turn that is not (yet) a whole phrase
    complete_ms: int = 200  # silence that ends it after a whole expected phrase; 0 = off
    mid_phrase_ms: int = 800  # silence allowed in the middle of a phrase

    @property
    def pause_ms(self) -> int:
        """When to ask the recogniser (0: never, a fixed hangover)."""
        return self.complete_ms if 0 < self.complete_ms < self.hangover_ms else 0

    def overridden(self, hangover_ms: int | None, complete_ms: int | None,
                   mid_phrase_ms: int | None) -> TurnTiming:
        """These values where given (a question's own), ours elsewhere."""
        given = {"hangover_ms": hangover_ms, "complete_ms": complete_ms, "mid_phrase_ms": mid_phrase_ms}
        return replace(self, **{k: v for k, v in given.items() if v is not None})


def pause_limit(heard: Partial | None, timing: TurnTiming) -> int | None:
    """How long, in all, the current pause may last given what has been heard:
    0 (end the turn now), `mid_phrase_ms`, or None (the hangover stands)."""
    if heard is None or not heard.text.strip():
        return None
    if heard.whole:
        return 0 if heard.confidence >= COMPLETE_CONFIDENCE else None
    return timing.mid_phrase_ms if heard.confidence >= MID_PHRASE_CONFIDENCE else None


def trails_off(text: str) -> bool:
    """Whether free-form words heard at a pause end where a sentence goes on
    ("Can I talk to?", "my order and"): the caller is drawing breath."""
    last = normalise(text).split()[-1:]
    return bool(last) and last[0] in GOES_ON


def words_end_turn(text: str, meaning: Interpretation) -> bool:
    """Whether free-form words heard at a pause already make a whole, clear
    request (an intent, a clear request for a person, a yes or a no) that does
    not trail off: then the pause ends the turn without waiting out the hangover."""
    if not normalise(text).split() or trails_off(text) or meaning.intent is None:
        return False
    return meaning.certain and not meaning.mention


def goes_past(text: str, beginning: str) -> bool:
    """Whether free-form words heard at a pause start as the grammar's beginning of a
    phrase there (most of its words, in order) and go on past it: both engines
    heard the same start, and the free-form one heard how it ended, which the
    grammar missed ("i want to speak to a" … "I want to speak, to the person.").
    The same words ("I need to reset" against "i need to reset") leave the pause
    running, as do words that start otherwise."""
    said, began = normalise(text).split(), normalise(beginning).split()
    blocks = _shared(began, said)
    shared = sum(b.size for b in blocks)
    return shared >= max(SAME_START * len(began), SAME_START_WORDS) and blocks[-1].b + blocks[-1].size < len(said)


def another_sentence(text: str, confidence: float, beginning: str) -> bool:
    """Whether free-form words heard at a pause, where the grammar hears the
    beginning of a phrase (`beginning`), are a fluent sentence of their own that
    starts otherwise and does not trail off ("My neighbor keeps parking in my
    spot." against "i need to speak to a live"): other speech the grammar forced
    into a phrase begun, so the pause is not held open for the phrase's end.
    The caller's own words drawing breath ("I want to speak." against "i want to
    speak") start as the grammar's beginning, and keep the wait; so do short
    ones (under SAME_START_WORDS), a misheard start as likely as other speech
    ("We're in." for "where is ... my order", audio_fixtures/turns)."""
    said, began = normalise(text).split(), normalise(beginning).split()
    if len(said) < SAME_START_WORDS or not began or confidence < FLUENT or trails_off(text):
        return False
    return sum(b.size for b in _shared(began, said)) < SAME_START * len(began)


def _shared(began: list[str], said: list[str]) -> list[Match]:
    """The runs of words both hold, in order."""
    return [b for b in SequenceMatcher(None, began, said, autojunk=False).get_matching_blocks() if b.size]
