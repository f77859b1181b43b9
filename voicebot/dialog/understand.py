"""From a transcript to what the caller wants: pure text rules, any engine.

Callers word things their own way, with fillers and hesitations, so intents
are found by their key words and example phrases inside the text, never by
whole-sentence equality. A person-word is not a request: "put me through to
an agent" asks for someone, "the agent told me my order would come" tells a
story. A person-word led by a request ("speak to", "get me", "transfer me to")
or standing almost alone ("agent please", "the manager, please") is a request;
one led by "the", "my" (also two words back, "my insurance agent", unless a
request leads up to it), or followed by "told"/"said" or a past tense ("a supervisor
approved it") is a mention; anything between is unsure,
and the policy asks before it transfers. A request verb right before the
person-word ("talk to the manager", "connect me with your help desk", "can I
have a human") decides it, whatever follows ("someone who works there"),
unless the sentence tells a story ("I tried to talk to an agent yesterday").
Without any person heard, "I need to speak to the ..." is an unsure request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from voicebot.dialog.flow import Intent
from voicebot.dialog.lang import HUMAN, NO, YES, LanguagePack
from voicebot.phrases import TemplateError, expand
from voicebot.types import normalise

_FILLERS = {"a", "an", "um", "uh", "er", "erm", "hmm", "please", "just", "real", "live", "actual",
            "now", "hi", "hello", "oh", "ok", "okay", "so", "well", "yeah", "thank", "thanks",
            "you", "being"}
_DEFINITE = {"the", "your", "my", "his", "her", "their", "our", "that", "this", "those", "these"}
_NEGATION = {"don't", "not", "never", "no", "didn't", "won't", "dont"}
_COMPUTER = "computer"  # a negation before it is about it, but it is no person-word ("my computer is broken")
_TALK = {"speak", "talk", "chat"}
_STORY = {"husband", "wife", "son", "daughter", "friend", "brother", "sister", "mother", "father",
          "mom", "dad", "neighbor", "neighbour", "boss", "colleague", "yesterday", "ago", "told",
          "said", "promised"}
_AFTER = {"told", "said", "says", "was", "were", "had", "spoke", "talked", "called", "sent",
          "promised", "hung", "gave", "who", "works", "worked", "is", "did", "would", "will", "left"}
_PAST = {"spoke", "talked", "called", "met", "saw", "had", "was", "were", "emailed", "chatted"}
_REQUEST_WINDOW = 5  # words before a person-word in which a request cue counts
# Words that may stand between a request verb and its person-word ("put me
# through to a real live agent", "speak with your support team").
_LINKS = {"to", "with", "me", "us", "through", "over", "on", "a", "an", "some", "one", "of", "from", "real",
          "live", "actual", "human", "please", "just", "the", "your", "our", "this", "any"}
_LINK_SPAN = 5
_AFTER_SPAN = 4  # words after a person-word in which "told", "gave", "who" mark a mention
_NOT_A_PERSON_AFTER = {"resources", "error", "nature", "rights"}  # "human resources"
_TOLD = {"tried", "asked", "already", "last", "earlier", "ago", "spoken"}  # a story: no request
_TELLING = _STORY | _PAST | _TOLD
_MODAL_ASK = ({"can", "could", "may"}, {"i", "we"})  # "can i have a person"
_IS = {"is", "are", "isn't"}
_NOT_DONE = {"needed", "trained", "qualified", "authorized", "authorised", "experienced", "dedicated"}


@dataclass(frozen=True)
class Interpretation:
    intent: str | None
    certain: bool = True  # for HUMAN: the request frame is clear
    mention: bool = False  # someone is told about ("my agent", "the operator transferred me")
    digits: str = ""  # digits spoken or typed in the utterance


def interpret(text: str, pack: LanguagePack, intents: list[Intent], answers: bool = True) -> Interpretation:
    """The caller's intent among `intents` plus the built-in ones (a person, yes, no).
    `answers`: the question takes a yes or a no; where it does not ("How can I help
    you?"), a yes or no word counts only said alone: "okay, can I just get ..." starts
    a request, it does not answer."""
    words = joined(normalise(text).split(), pack)
    if not words:
        return Interpretation(None)
    digits = spoken_digits(words, pack)
    hits = _person_hits(words, pack)
    person, mention = _request_verdict(words, hits, pack)
    if person is not None and person:
        return Interpretation(HUMAN, certain=True, digits=digits)
    answer = yes_or_no(words, pack, alone=not answers)
    best = best_intent(words, intents, pack)
    if best is not None:
        return Interpretation(best, digits=digits)
    if person is None and hits:
        return Interpretation(HUMAN, certain=False, mention=mention, digits=digits)
    put_through = _asks_to_be_put_through(words, pack)
    if put_through is not None:
        return Interpretation(HUMAN, certain=put_through, digits=digits)
    if answer is not None:
        return Interpretation(answer, digits=digits)
    return Interpretation(None, mention=bool(hits), digits=digits)


def joined(words: list[str], pack: LanguagePack) -> list[str]:
    """`words` with the pack's compounds written apart put together ("some one")."""
    out: list[str] = []
    for word in words:
        pair = f"{out[-1]} {word}" if out else ""
        whole = next((one for apart, one in pack.compounds if apart == pair), None)
        if whole is not None:
            out[-1] = whole
        else:
            out.append(word)
    return out


def person_request(words: list[str], pack: LanguagePack) -> bool | None:
    """True: a clear request for a person; False: only mentions of people (or
    none at all); None: a person-word whose frame is unclear."""
    return _request_verdict(words, _person_hits(words, pack), pack)[0]


def _request_verdict(words: list[str], hits: list[tuple[int, int]],
                     pack: LanguagePack) -> tuple[bool | None, bool]:
    """(True: a request / False: only mentions / None: unsure, whether a person-word was told about)."""
    if not hits:
        return False, False
    unsure = mention = False
    for start, end in hits:
        verdict, mentioned = _frame(words, start, end, pack)
        if verdict is True:
            return True, False
        unsure, mention = unsure or verdict is None, mention or mentioned
    return (None if unsure else False), mention


def _frame(words: list[str], start: int, end: int, pack: LanguagePack) -> tuple[bool | None, bool]:
    before = words[max(0, start - _REQUEST_WINDOW):start]
    after = words[end:end + _AFTER_SPAN]
    not_people = " ".join(words[start:end]) in pack.not_people
    negated = _negated(words, start, pack)
    requested = any(any(cue in w for cue in pack.request_cues) for w in before) if pack.attaches_particles \
        else any(w in pack.request_cues for w in before)
    if pack.attaches_particles:
        requested = requested or any(any(cue in w for cue in pack.request_cues) for w in words[end:])
        mentioned = any(any(c in w for c in pack.mention_cues) for w in words)
    else:
        # "someone i can talk to", "can somebody help me"; not "the agent on the chat gave me
        # a code" (after "the", a noun)
        requested = requested or any((w in _TALK or w == "help") and words[i - 1] not in _DEFINITE
                                     for i, w in enumerate(words[end:end + 4], start=end))
        mentioned = (bool(before) and before[-1] in _DEFINITE) or any(_tells(w) for w in after) \
            or any(w in _STORY or w in _TOLD for w in words) or any(w in _PAST for w in before) \
            or _tells_who_they_are(before) or (not requested and len(before) >= 2 and before[-2] in _DEFINITE)
    if not_people:
        return (True if negated and requested else None), False
    if not pack.attaches_particles and _named_alone(words, start, end):
        return (True if "please" in words else None), False
    if not negated and not pack.attaches_particles and _direct_request(words, start, pack):
        return True, False
    if negated:
        return None, mentioned
    content = [w for w in words if w not in _FILLERS]
    if (len(content) <= pack.short_request_words or requested) and not mentioned:
        return True, False
    if mentioned and not requested:
        return False, True
    return None, mentioned or start <= 1  # "somebody from billing left me ...": told about


def _tells(word: str) -> bool:
    """A word after a person-word that tells about them: what they did ("the
    supervisor approved it", "someone delivered it"), or the mention words."""
    return word in _AFTER or (len(word) > 4 and word.endswith("ed") and word not in _NOT_DONE)


def _negated(words: list[str], start: int, pack: LanguagePack) -> bool:
    """A negation before the person-word that is about it: "no robots, just a person"
    negates the robot, not the person after it."""
    for i in range(start - 1, -1, -1):
        if words[i] in pack.not_people or words[i] == _COMPUTER:
            return False
        if words[i] in _NEGATION:
            return True
    return False


def _named_alone(words: list[str], start: int, end: int) -> bool:
    """"the manager, please", "your operator": the person-word with a determiner and
    nothing but fillers around it names whom the caller wants; a mention tells
    something about them. With "please" it is a request, else unsure."""
    around = words[:start] + words[end:]
    return any(w in _DEFINITE for w in around) and all(w in _FILLERS or w in _DEFINITE for w in around)


def _tells_who_they_are(before: list[str]) -> bool:
    """"i am a real estate agent", "i'm an agent myself": the caller says what they are."""
    return any(w in ("am", "i'm") and before[i + 1:i + 2] in (["a"], ["an"]) for i, w in enumerate(before))


def _direct_request(words: list[str], start: int, pack: LanguagePack) -> bool:
    """A request verb right before the person-word, in a sentence that tells no story
    ("i tried to talk to an agent yesterday" is one)."""
    i = start - 1
    while i >= 0 and start - i <= _LINK_SPAN and words[i] in _LINKS:
        i -= 1
    if i < 0 or start - i > _LINK_SPAN:
        return False
    verb = words[i] in pack.request_cues or words[i] in pack.direct_verbs or (
        words[i] == "have" and i >= 2 and words[i - 2] in _MODAL_ASK[0] and words[i - 1] in _MODAL_ASK[1]) or (
        words[i] == "there" and i >= 1 and words[i - 1] in _IS)  # "is there a real person there?"
    return verb and not any(w in _TELLING for w in words)


def _asks_to_be_put_through(words: list[str], pack: LanguagePack) -> bool | None:
    """"I need to speak to ...", "connect me with ...": on a call with a bot, a wish
    to talk to someone, though the engine missed who. True: asking to be transferred
    ("can you transfer me", "put me through to billing"); False: unsure, the policy
    asks first ("i need to speak to the ..."); None: neither."""
    text = f" {' '.join(words)} "
    found: bool | None = None
    for frame in pack.put_through:  # whole words: English only (no Korean frames)
        at = text.find(f" {frame} ")
        if at >= 0 and not any(w in _STORY or w in _PAST or w in _NEGATION for w in text[:at].split()):
            found = found or frame in pack.transfer_me
    return found


def _person_hits(words: list[str], pack: LanguagePack) -> list[tuple[int, int]]:
    hits = []
    for phrase in pack.person_words + pack.more_person_words + pack.not_people:
        parts = phrase.split()
        n = len(parts)
        for i in range(len(words) - n + 1):
            if pack.attaches_particles:
                if n == 1 and parts[0] in words[i]:
                    hits.append((i, i + 1))
            elif words[i:i + n] == parts and (i + n >= len(words) or words[i + n] not in _NOT_A_PERSON_AFTER):
                hits.append((i, i + n))
    return sorted(hits)


def yes_or_no(words: list[str], pack: LanguagePack, alone: bool = False) -> str | None:
    """Yes or no, said alone or (unless `alone`) at the start of the words."""
    text = " ".join(words)
    for intent, phrases in ((NO, pack.no), (YES, pack.yes)):
        for phrase in phrases:
            if text == phrase or (not alone and (text.startswith(phrase + " ")
                                                 or (pack.attaches_particles and words[0] == phrase))):
                return intent
    if not alone:
        return next((intent for stem, intent in pack.answer_stems if words[0].startswith(stem)), None)
    return None


def best_intent(words: list[str], intents: list[Intent], pack: LanguagePack) -> str | None:
    """The intent with the most key-word and example evidence; None on a tie or none."""
    text = f" {' '.join(words)} "
    scores: dict[str, float] = {}
    for intent in intents:
        score = 0.0
        for keyword in intent.keywords.get(pack.code, ()):
            if _contains(text, words, keyword, pack):
                score += 1.0
        for example in intent.examples.get(pack.code, ()):
            if any(f" {sentence} " in text for sentence in _sentences(example)):
                score += 2.0
                break
        if score:
            scores[intent.name] = score
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


@lru_cache(maxsize=256)
def example_sentences(templates: tuple[str, ...], limit: int = 200) -> tuple[str, ...]:
    """The sentences an intent's example templates say, at most `limit`: each written
    out whole, then the expansions of the others spread evenly. What a free-form
    engine's words are compared with."""
    whole = [t for t in templates if len(_sentences(t)) == 1]
    expanded = [s for t in templates if len(_sentences(t)) > 1 for s in _sentences(t)]
    first = list(dict.fromkeys(s for t in whole for s in _sentences(t)))[:limit]
    rest = [s for s in dict.fromkeys(expanded) if s not in first]
    step = max(1, -(-len(rest) // max(1, limit - len(first))))
    return tuple(first + rest[::step][:limit - len(first)])


@lru_cache(maxsize=4096)
def _sentences(template: str) -> tuple[str, ...]:
    """A template's expansions (its `*` matches anything, so it is left out)."""
    try:
        return tuple(expand(template, 500))
    except TemplateError:
        return (template,)


def _contains(text: str, words: list[str], keyword: str, pack: LanguagePack) -> bool:
    if pack.attaches_particles:  # 주문을, 배송이
        return any(part in w for part in keyword.split() for w in words)
    if " " in keyword:  # "sign in": also "signing in", "signed in", "sign into"
        first, rest = keyword.split(" ", 1)
        rests = (rest, rest + "to") if rest == "in" else (rest,)
        return any(f" {form} {r} " in text for form in _forms(first) for r in rests)
    return any(w in _forms(keyword) for w in words)


@lru_cache(maxsize=1024)
def _forms(word: str) -> frozenset[str]:
    """A key word and its regular English endings: package(s), deliver(ed|ing), arrive(d),
    log(ged|ging)."""
    stem = word[:-1] if word.endswith("e") else word
    doubled = word + word[-1]  # a short verb's last consonant doubles: logging, shipped
    return frozenset({word, word + "s", word + "es", stem + "ed", stem + "ing", word + "d",
                      doubled + "ed", doubled + "ing"})


def spoken_digits(words: list[str], pack: LanguagePack) -> str:
    out = []
    for w in words:
        if w.isdigit():
            out.append(w)
        elif w in pack.digits:
            out.append(pack.digits[w])
    return "".join(out)
