"""What every flow gets for free in each language: the system prompts (the
disclosure, the handoff line, the confirmation question...) and the words
that let a caller reach a person, say yes or no, or read out digits.

A flow file adds its own prompts and intents on top and may reword the
system prompts, but never remove the disclosure or the way to a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.types import normalise

HUMAN = "human"
YES = "yes"
NO = "no"
GOODBYE = "goodbye"
BUILTIN_INTENTS = (HUMAN, YES, NO)

__all__ = ["HUMAN", "YES", "NO", "GOODBYE", "LanguagePack", "PACKS", "SYSTEM_PROMPTS", "normalise"]

# prompts the policy itself says; a flow may reword them per language
SYSTEM_PROMPTS = (
    "disclosure", "opt_out_key", "recording_consent", "didnt_catch", "no_input", "unresolved",
    "anything_else", "handoff", "goodbye",
    "confirm_human", "confirm_slot", "slot_invalid", "human_unavailable", "human_unavailable_no_number",
    "csat_survey",
)


@dataclass(frozen=True)
class LanguagePack:
    code: str
    voice: str  # espeak-ng voice name for pyttsx3
    prompts: dict[str, str]
    person_words: tuple[str, ...]  # a person, in any words: a request or a mention
    person_examples: tuple[str, ...]  # whole requests, to shape the recogniser's search
    request_cues: tuple[str, ...]  # words that make a person-word a request
    mention_cues: tuple[str, ...]  # words that make it a story about someone
    yes: tuple[str, ...]
    no: tuple[str, ...]
    digits: dict[str, str]  # spoken digit word -> digit
    short_request_words: int = 3  # a person-word in an utterance this short is a request
    # words carry attached particles (Korean 상담원을, 상담원이): cues and person-words
    # are found inside words, not as whole words
    attaches_particles: bool = False
    # person-words the matcher knows that the free-form engine's prompt does not name
    # (dev sets: naming these too changed Whisper's words for the worse, 4 calls)
    more_person_words: tuple[str, ...] = ()
    # the machine the caller is talking to: asking to leave it is asking for a person
    # ("i don't want to talk to a robot"); found like person-words, never named in the prompt
    not_people: tuple[str, ...] = ()
    put_through: tuple[str, ...] = ()  # asking to talk to someone, whoever it is ("speak to")
    # asking to be transferred, which says it is a request whatever follows ("transfer me")
    transfer_me: tuple[str, ...] = ()
    # verbs that make a person-word right after them a request, besides request_cues
    # ("i would like a human"); too common to count anywhere before a person-word
    direct_verbs: tuple[str, ...] = ()
    open_yes: int = 2  # how many of `yes` an open question listens for ("anything else?" "yes please")
    # how a free-form engine's prompt starts, {people} being person-words ("": no prompt)
    opinion_lead: str = ""
    # words a free-form engine writes apart that are one word ("some one": someone)
    compounds: tuple[tuple[str, str], ...] = ()
    # the start of a word that answers a yes/no question whatever follows it (Whisper
    # writes Korean "예 부탁드려요" as "예고 탁을 연결"): (stem, YES or NO)
    answer_stems: tuple[tuple[str, str], ...] = ()

    def opinion_prompt(self, topics: list[str]) -> str:
        """Words a free-form engine should expect here: people and the question's topics."""
        if not self.opinion_lead:
            return ""
        people = ", ".join(self.person_words)
        return self.opinion_lead.format(people=people) + (f" {', '.join(topics)}." if topics else "")


EN = LanguagePack(
    code="en",
    opinion_lead="Customer service call. Let me talk to {people}. My",
    voice="en-us",
    prompts={
        "disclosure": "You've reached our automated assistant, not a person. "
        "Ask for a person at any time.",
        # follows the disclosure when VOICEBOT_OPT_OUT_KEY is set (the default, 9)
        "opt_out_key": "Press {key} to always speak to a person.",
        # after the disclosure when VOICEBOT_RECORDING=consent
        "recording_consent": "This call can be recorded to help us improve. To allow it, press 1 "
        "or say yes. Otherwise, it won't be recorded.",
        "didnt_catch": "Sorry, I didn't catch that. Could you say it again?",
        "no_input": "Are you still there? Tell me how I can help, or say agent to reach a person.",
        "unresolved": "I'm not able to help with that myself. Or say agent to talk to a person.",
        "anything_else": "Is there anything else I can help you with?",
        "handoff": "I'm connecting you to a person now. They will see what you've told me, "
        "so you won't have to repeat yourself.",
        "goodbye": "Thank you for calling. Goodbye.",
        "confirm_human": "Do you want me to connect you to a person?",
        "confirm_slot": "I heard {value}. Is that right?",
        "slot_invalid": "Sorry, that doesn't look right. Please say or key it in again.",
        # said by the gateway (Twilio <Say>) when the human line did not answer
        "human_unavailable": "I'm sorry, no one could take your call just now. A person has "
        "your request and will call you back at this number. Goodbye.",
        "human_unavailable_no_number": "I'm sorry, no one could take your call just now. "
        "Please call us again a little later. Goodbye.",
        # the optional post-call survey ([flow] csat_survey): keys only, skipping is free
        "csat_survey": "Before you go, please rate this call from 1 to 5 on your keypad, "
        "5 being best. Or just hang up.",
    },
    person_words=(
        "person", "human", "agent", "representative", "operator", "someone", "somebody", "anyone",
        "anybody", "staff", "associate", "advisor", "customer service", "rep",
        "supervisor", "manager", "employee", "team member", "staff member", "support team",
        "help desk", "customer support", "specialist",
    ),
    more_person_words=("customer care", "tech support", "technical support"),
    not_people=("robot", "robots", "bot", "machine"),
    # Templates (voicebot.phrases): the shapes a request for a person takes,
    # compiled into the recogniser's graph. Kept deliberately small: every
    # alternative added here is also a shape that other speech can be forced
    # into (measured: filler words before and after let real out-of-domain
    # speech pass as confident requests).
    person_examples=(
        "(i want to | i need to | i'd like to | i would like to | can i | could i | let me) (speak | talk) "
        "(to | with) [(a | an | some)] [(real | live)] "
        "(person | human | agent | representative | operator | someone | somebody | human being) [please]",
        "[(can you | could you | please)] (put me through to | transfer me to | connect me to | connect me with | "
        "get me) [(a | an | some)] [(real | live)] "
        "(person | human | agent | representative | operator | someone | somebody | human being) [please]",
        "(i want | i need) [(a | an | some)] [(real | live)] "
        "(person | human | agent | representative | operator | someone | somebody | human being) [please]",
        "[(a | an | some)] [(real | live)] "
        "(person | human | agent | representative | operator | someone | somebody | human being) please",
        "agent", "representative", "operator", "customer service", "customer service please",
        "is there (someone | somebody | anyone | a person | a human) i can (talk | speak) to",
        # the sentences of the grammar before flows, kept whole
        "i want to speak to a person", "can i talk to a human", "agent please", "i want to talk to someone real",
        "i don't want to talk to a robot", "let me speak to a real person", "connect me to customer service",
    ),
    request_cues=(
        "speak", "talk", "connect", "transfer", "get", "put", "give", "want", "need", "reach",
        "let", "please", "through", "find", "chat", "wanna", "gimme", "hook", "send", "route",
        "speaking", "talking", "chatting", "connecting", "transferred", "transferring", "pass",
        "hand", "deal", "prefer", "rather", "reaching", "getting", "connected", "take", "bring",
    ),
    direct_verbs=("like", "help"),  # "i need help from a real person"
    put_through=("speak to", "speak with", "talk to", "talk with", "chat with", "speaking to",
                 "speaking with", "talking to", "talking with", "connect me", "transfer me",
                 "put me through", "pass me to", "hand me over"),
    transfer_me=("transfer me", "put me through"),
    mention_cues=(
        "the", "your", "my", "his", "her", "their", "our", "that", "this", "told", "said", "says",
        "was", "were", "had", "spoke", "talked", "called", "sent", "promised", "hung", "gave",
        "yesterday", "already", "last", "ago", "earlier", "who", "husband", "wife", "son",
        "daughter", "friend", "brother", "sister", "mother", "father", "mom", "dad", "neighbor",
        "neighbour", "boss", "colleague", "works", "worked",
    ),
    yes=("yes", "yes please", "yeah", "yep", "sure", "please do", "correct", "that's right",
         "right", "ok", "okay", "uh huh", "absolutely", "of course"),
    no=("no", "nope", "no thanks", "no thank you", "not now", "nah", "wrong", "that's wrong",
        "no it isn't", "no that's not right"),
    digits={"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
            "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"},
    # Whisper on a synthetic voice: "Could you, through some, one on the phone?"
    compounds=(("some one", "someone"), ("some body", "somebody"), ("any one", "anyone"),
               ("any body", "anybody")),
)

KO = LanguagePack(
    code="ko",
    voice="ko",
    prompts={
        "disclosure": "저는 사람이 아닌 자동 응답 도우미입니다. 언제든지 상담원을 요청하실 수 있습니다.",
        "opt_out_key": "항상 상담원과 통화하시려면 {key}번을 누르세요.",
        "recording_consent": "서비스 개선을 위해 통화를 녹음할 수 있습니다. 동의하시면 1번을 누르거나 "
        "네라고 말씀해 주세요. 그렇지 않으면 녹음하지 않습니다.",
        "didnt_catch": "죄송합니다, 잘 듣지 못했습니다. 다시 말씀해 주시겠어요?",
        "no_input": "듣고 계신가요? 상담원을 원하시면 상담원이라고 말씀해 주세요.",
        "unresolved": "그 일은 제가 직접 도와드리기 어렵습니다. "
        "상담원과 통화하시려면 상담원이라고 말씀해 주세요.",
        "anything_else": "더 도와드릴 일이 있을까요?",
        "handoff": "지금 상담원에게 연결해 드리겠습니다. 말씀하신 내용은 상담원이 볼 수 있습니다.",
        "goodbye": "전화해 주셔서 감사합니다. 안녕히 계세요.",
        "confirm_human": "상담원에게 연결해 드릴까요?",
        "confirm_slot": "{value} 맞습니까?",
        "slot_invalid": "죄송합니다, 올바르지 않은 번호입니다. 다시 말씀해 주세요.",
        "human_unavailable": "죄송합니다. 지금은 상담원이 전화를 받을 수 없습니다. "
        "요청하신 내용을 확인하고 이 번호로 다시 연락드리겠습니다. 안녕히 계세요.",
        "human_unavailable_no_number": "죄송합니다. 지금은 상담원이 전화를 받을 수 없습니다. "
        "잠시 후에 다시 전화해 주세요. 안녕히 계세요.",
        "csat_survey": "끊기 전에 이번 통화를 키패드로 1에서 5까지 평가해 주세요. "
        "5가 가장 좋습니다. 원하지 않으시면 그냥 끊으셔도 됩니다.",
    },
    person_words=("상담원", "사람", "직원", "상담사", "담당자"),
    # Vosk turns a phrase list into a bigram of its words: every word added
    # lets more mixtures through (measured: 8 more phrases turned a clear
    # "상담원 연결해 주세요" into a mixture), so the Korean list stays short.
    person_examples=("상담원 연결해 주세요", "상담원", "사람 이랑 통화 하고 싶어요", "직원 바꿔 주세요"),
    request_cues=("주세요", "싶어요", "바꿔", "연결", "통화", "할게요", "해줘", "줘요", "원해요"),
    mention_cues=("했는데", "했어요", "그", "어제", "말했", "했다"),
    yes=("네", "예", "네 맞아요", "네 연결해 주세요", "맞아요", "좋아요", "응", "그래요"),
    no=("아니요", "아니오", "괜찮습니다", "아니요 괜찮습니다", "됐어요", "아뇨", "아니", "아님"),
    digits={"영": "0", "공": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5",
            "육": "6", "칠": "7", "팔": "8", "구": "9"},
    short_request_words=2,
    open_yes=1,
    opinion_lead="고객센터 전화입니다. {people} 연결해 주세요.",
    answer_stems=(("아니", NO), ("아뇨", NO), ("네", YES), ("예", YES), ("응", YES)),
    attaches_particles=True,
)


PACKS: dict[str, LanguagePack] = {EN.code: EN, KO.code: KO}
