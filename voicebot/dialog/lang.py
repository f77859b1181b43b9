"""Language packs: what the bot says and which phrasings it listens for.

Each pack gives the prompts, the intents with their trigger phrases, and the
grammar (the full sentences a grammar-mode recogniser is allowed to output).
Triggers are matched as whole-word sequences inside the normalised transcript,
so "can I speak to a person please" matches the trigger "a person".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HUMAN = "human"
ORDER_STATUS = "order_status"
PASSWORD_RESET = "password_reset"
GOODBYE = "goodbye"
YES = "yes"

PROMPT_NAMES = (
    "disclosure", "menu", "didnt_catch", "no_input", "unresolved",
    "order_status", "password_reset", "anything_else", "handoff", "goodbye",
)


@dataclass(frozen=True)
class LanguagePack:
    code: str
    voice: str  # espeak-ng voice name for pyttsx3
    prompts: dict[str, str]
    triggers: dict[str, tuple[str, ...]]  # intent -> trigger phrases
    grammar: tuple[str, ...]  # sentences a grammar-mode recogniser may output
    fillers: tuple[str, ...] = field(default=())  # out-of-domain words for rejection

    def match_intent(self, text: str) -> str | None:
        """First intent whose trigger occurs in `text`; HUMAN wins over the rest."""
        norm = f" {normalise(text)} "
        for intent, phrases in self.triggers.items():
            if any(f" {normalise(p)} " in norm for p in phrases):
                return intent
        return None


def normalise(text: str) -> str:
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


EN = LanguagePack(
    code="en",
    voice="en-us",
    prompts={
        "disclosure": "You've reached our automated assistant. I'm a computer, not a person. "
        "You can ask for a person at any time.",
        "menu": "How can I help you today? I can check on an order or help you reset a password.",
        "didnt_catch": "Sorry, I didn't catch that. Could you say it again?",
        "no_input": "Are you still there? Tell me how I can help, or say agent to reach a person.",
        "unresolved": "I can help with order status or password resets. "
        "Or say agent to talk to a person.",
        "order_status": "You can follow your order at any time under My Orders on our website, "
        "and we send you a text message when it ships.",
        "password_reset": "To reset your password, choose Forgot password on the sign in page, "
        "and we will email you a link that works for one hour.",
        "anything_else": "Is there anything else I can help you with?",
        "handoff": "I'm connecting you to a person now. They will see what you've told me, "
        "so you won't have to repeat yourself.",
        "goodbye": "Thank you for calling. Goodbye.",
        # said by the gateway (Twilio <Say>) when the human line did not answer
        "human_unavailable": "I'm sorry, no one could take your call just now. A person has "
        "your request and will call you back at this number. Goodbye.",
        "human_unavailable_no_number": "I'm sorry, no one could take your call just now. "
        "Please call us again a little later. Goodbye.",
    },
    triggers={
        HUMAN: (
            "person", "human", "agent", "representative", "operator", "someone real",
            "real person", "robot", "a real human", "customer service", "somebody",
            "speak to someone", "talk to someone",
        ),
        ORDER_STATUS: ("order", "package", "delivery", "shipment", "tracking"),
        PASSWORD_RESET: ("password", "log in", "locked out", "sign in"),
        GOODBYE: ("no", "no thanks", "that's all", "that's it", "goodbye", "bye", "nothing else"),
        YES: ("yes", "yeah", "yep", "sure"),
    },
    grammar=(
        "i want to speak to a person",
        "can i talk to a human",
        "agent",
        "agent please",
        "representative",
        "operator",
        "i want to talk to someone real",
        "i don't want to talk to a robot",
        "let me speak to a real person",
        "connect me to customer service",
        "where is my order",
        "check my order status",
        "i want to track my package",
        "when will my delivery arrive",
        "i need to reset my password",
        "i forgot my password",
        "i can't log in to my account",
        "no thanks",
        "no that's all",
        "goodbye",
        "yes",
        "yes please",
    ),
)

KO = LanguagePack(
    code="ko",
    voice="ko",
    prompts={
        "disclosure": "자동 응답 도우미에 연결되었습니다. 저는 사람이 아닌 컴퓨터입니다. "
        "언제든지 상담원을 요청하실 수 있습니다.",
        "menu": "무엇을 도와드릴까요? 주문 확인이나 비밀번호 재설정을 도와드릴 수 있습니다.",
        "didnt_catch": "죄송합니다, 잘 듣지 못했습니다. 다시 말씀해 주시겠어요?",
        "no_input": "듣고 계신가요? 상담원을 원하시면 상담원이라고 말씀해 주세요.",
        "unresolved": "주문 확인과 비밀번호 재설정을 도와드릴 수 있습니다. "
        "상담원과 통화하시려면 상담원이라고 말씀해 주세요.",
        "order_status": "주문 내역은 웹사이트의 내 주문에서 언제든지 확인하실 수 있습니다.",
        "password_reset": "로그인 화면에서 비밀번호 찾기를 누르시면 이메일로 링크를 보내 드립니다.",
        "anything_else": "더 도와드릴 일이 있을까요?",
        "handoff": "지금 상담원에게 연결해 드리겠습니다. 말씀하신 내용은 상담원이 볼 수 있습니다.",
        "goodbye": "전화해 주셔서 감사합니다. 안녕히 계세요.",
        "human_unavailable": "죄송합니다. 지금은 상담원이 전화를 받을 수 없습니다. "
        "요청하신 내용을 확인하고 이 번호로 다시 연락드리겠습니다. 안녕히 계세요.",
        "human_unavailable_no_number": "죄송합니다. 지금은 상담원이 전화를 받을 수 없습니다. "
        "잠시 후에 다시 전화해 주세요. 안녕히 계세요.",
    },
    triggers={
        HUMAN: ("상담원", "사람", "직원"),
        ORDER_STATUS: ("주문", "배송"),
        PASSWORD_RESET: ("비밀번호",),
        GOODBYE: ("아니요", "괜찮습니다", "없습니다", "안녕히"),
        YES: ("네", "예"),
    },
    # Sentences in the Korean Vosk model's spelling where it matters for the
    # triggers: the model writes 사람이랑 as "사람 이랑", so the HUMAN trigger
    # "사람" matches. Other words the model splits itself (비밀번호를 → 비밀번호 를)
    # are split by the engine, and the transcript carries the model's spelling.
    grammar=(
        "상담원 연결해 주세요",
        "상담원",
        "사람 이랑 통화 하고 싶어요",
        "직원 바꿔 주세요",
        "주문 조회해 주세요",
        "배송 조회",
        "비밀번호를 잊어버렸어요",
        "비밀번호 재설정",
        "아니요 괜찮습니다",
        "네",
    ),
)


PACKS: dict[str, LanguagePack] = {EN.code: EN, KO.code: KO}
