"""The dialog policy, driven event by event with no I/O."""

import pytest

from voicebot.dialog import policy as p
from voicebot.dialog.flow import DEFAULT_FLOW
from voicebot.dialog.flowcheck import load_checked
from voicebot.types import HandoffReason, Outcome, Utterance

FLOW = load_checked(DEFAULT_FLOW)


def heard(text: str, conf: float = 0.97) -> p.Heard:
    return p.Heard(Utterance(text, conf, 0, 1))


def handoff_to(reason: HandoffReason):
    """Matches a Handoff for `reason` to whichever queue the node names."""
    class _Handoff:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, p.Handoff) and other.reason == reason

        def __repr__(self) -> str:
            return f"Handoff({reason})"
    return _Handoff()


class Call:
    """Plays a policy like the session does: each Say is 'played' when asked."""

    def __init__(self, **config):
        self.policy = p.Policy(FLOW, "en", p.PolicyConfig(**config))
        self.said: list[str] = []
        self.actions: list[p.Action] = []
        self._do(self.policy.start())

    def _do(self, actions):
        self.actions += actions
        self.said += [a.name for a in actions if isinstance(a, p.Say)]

    def send(self, event):
        self._do(self.policy.step(event))
        return self

    def played(self):
        prompt = self.policy.current_prompt
        assert prompt is not None, "nothing is playing"
        return self.send(p.PromptDone(prompt.prompt_id))

    @property
    def final(self):
        return self.actions[-1]


def test_disclosure_first_and_not_interruptible():
    call = Call()
    first = call.actions[0]
    assert isinstance(first, p.Say) and first.name == "disclosure" and not first.interruptible
    assert "automated assistant" in first.text and "not a person" in first.text
    call.send(p.SpeechBegan())
    assert not any(isinstance(a, p.StopPlayback) for a in call.actions)


def test_custom_disclosure_text_is_used():
    call = Call(disclosure_text="This is an AI assistant.")
    assert call.actions[0].text == "This is an AI assistant."


def test_request_during_disclosure_acted_on_after_it():
    call = Call().send(heard("agent please"))
    assert call.said == ["disclosure"]  # nothing happens until it has played
    call.played()
    assert call.said == ["disclosure", "handoff"]
    call.played()
    assert call.final == handoff_to(HandoffReason.CALLER_REQUEST)


def test_dtmf_zero_during_disclosure_and_after():
    assert Call().send(p.KeyPressed("0")).played().played().final == handoff_to(HandoffReason.CALLER_REQUEST)
    call = Call().played().played().send(p.KeyPressed("0")).played()
    assert call.final == handoff_to(HandoffReason.CALLER_REQUEST)


@pytest.mark.parametrize("text", [
    "i want to speak to a person", "can i talk to a human", "agent", "representative",
    "operator", "i want to talk to someone real", "i don't want to talk to a robot",
])
def test_many_phrasings_reach_a_human(text):
    call = Call().played().played().send(heard(text)).played()
    assert call.said[-1] == "handoff" and call.final == handoff_to(HandoffReason.CALLER_REQUEST)


def test_low_confidence_reprompts_then_hands_off():
    call = Call().played().played().send(heard("agent please", conf=0.15))
    assert call.said[-1] == "didnt_catch"  # below the confirm rung even "agent" is not acted on
    call.played().send(heard("blah", conf=0.2)).played()
    assert call.final == handoff_to(HandoffReason.LOW_CONFIDENCE)


def test_low_confidence_turns_configurable():
    call = Call(low_confidence_turns=3).played().played()
    for _ in range(2):
        call.send(heard("x", conf=0.1)).played()
    assert call.said[-1] == "didnt_catch"
    call.send(heard("x", conf=0.1)).played()
    assert call.final == handoff_to(HandoffReason.LOW_CONFIDENCE)


def test_no_input_reprompts_then_hands_off():
    call = Call().played().played()
    assert call.final == p.ExpectInput(6.0)
    call.send(p.NoInput())
    assert call.said[-1] == "no_input"
    call.played().send(p.NoInput()).played()
    assert call.final == handoff_to(HandoffReason.NO_INPUT)


def test_routine_request_answered_then_goodbye_completes():
    call = Call().played().played().send(heard("where is my order"))
    assert call.said[-1] == "order_status"
    call.played()
    assert call.said[-1] == "anything_else"
    call.played().send(heard("no that's all"))
    assert call.said[-1] == "goodbye"
    call.played()
    assert call.final == p.End(Outcome.COMPLETED)


def test_silence_after_an_answer_ends_politely():
    call = Call().played().played().send(heard("i forgot my password")).played().played()
    call.send(p.NoInput()).played()
    assert call.said[-2:] == ["anything_else", "goodbye"] and call.final == p.End(Outcome.COMPLETED)


def test_unresolved_requests_go_to_a_human():
    call = Call().played().played().send(heard("yes please")).played()  # understood but no topic
    call.send(heard("i forgot my password")).played().played()
    call.send(heard("goodbye")).played()
    assert call.final == p.End(Outcome.COMPLETED)
    stuck = Call(unresolved_turns=1).played().played()
    stuck.policy.step(p.SpeechBegan())
    stuck.send(heard("yes please")).played()  # understood, but the menu has nowhere to go with it
    assert stuck.final == handoff_to(HandoffReason.UNRESOLVED)


def test_clear_words_the_flow_does_not_know_are_asked_again_once_then_put_through():
    call = Call().played().played()
    call.send(heard("what time does the game start tonight"))
    assert call.said[-1] == "unresolved"  # the menu's no-match edge: what the bot can do
    call.played().send(heard("the bakery on my street closed down")).played()
    assert call.final == handoff_to(HandoffReason.LOW_CONFIDENCE)
    mixed = Call().played().played().send(heard("mumble", conf=0.2))
    assert mixed.said[-1] == "didnt_catch"
    mixed.played().send(heard("what time does the game start tonight")).played()
    assert mixed.final == handoff_to(HandoffReason.LOW_CONFIDENCE)  # not a third try
    helped = Call().played().played().send(heard("what time does the game start tonight")).played()
    helped.send(heard("i forgot my password")).played().played()
    helped.send(heard("what time does the game start tonight"))
    assert helped.said[-1] == "unresolved"  # an understood turn between starts the count again


def test_barge_in_stops_prompts_but_not_disclosure_or_handoff_line():
    call = Call().played()  # menu now playing
    call.send(p.SpeechBegan())
    assert isinstance(call.final, p.StopPlayback)
    call.send(heard("agent"))
    call.send(p.SpeechBegan())  # talking over the handoff line does not cut it
    assert call.said[-1] == "handoff" and not isinstance(call.final, p.StopPlayback)


def test_stale_prompt_done_is_ignored():
    call = Call().played()
    menu_id = call.policy.current_prompt.prompt_id
    call.send(p.SpeechBegan()).send(heard("where is my order"))
    before = list(call.actions)
    call.send(p.PromptDone(menu_id, interrupted=True))
    assert call.actions == before


def test_any_failure_hands_off_with_system_error():
    call = Call().played().played().send(p.Failed("engine crashed")).played()
    assert call.final == handoff_to(HandoffReason.SYSTEM_ERROR)
    during_disclosure = Call().send(p.Failed("asr"))
    assert during_disclosure.said == ["disclosure"]  # the notice still plays in full
    during_disclosure.played().played()
    assert during_disclosure.final == handoff_to(HandoffReason.SYSTEM_ERROR)


def test_failure_of_the_handoff_line_still_transfers():
    call = Call().played().played().send(heard("agent")).send(p.Failed("tts"))
    assert call.final == handoff_to(HandoffReason.CALLER_REQUEST)
    assert call.policy.step(p.Failed("again")) == []


def test_korean_pack_routes_requests():
    policy = p.Policy(FLOW, "ko")
    policy.start()
    policy.step(p.PromptDone(1))
    u = Utterance("상담원 연결해 주세요", 0.97, 0, 1)
    assert [a.name for a in policy.step(p.Heard(u))] == ["handoff"]


# --- recording consent (VOICEBOT_RECORDING=consent) ----------------------------------
def consents(call: Call) -> list[str]:
    return [a.answer for a in call.actions if isinstance(a, p.RecordingConsent)]


def asked_consent(**config) -> Call:
    call = Call(ask_recording_consent=True, opt_out_key="9", **config).played()  # the disclosure
    assert call.said == ["disclosure", "recording_consent"] and consents(call) == ["asked"]
    assert call.policy.listen_context == "yesno"
    return call.played()


@pytest.mark.parametrize(("answer", "consent"), [
    (p.KeyPressed("1"), "given"), (heard("yes"), "given"), (heard("yeah"), "given"),
    (p.KeyPressed("2"), "refused"), (p.KeyPressed("#"), "refused"), (heard("no"), "refused"),
    (heard("no thanks"), "refused"), (p.NoInput(), "no_answer"), (heard("yes", 0.1), "no_answer"),
    (heard("where is my order"), "no_answer"),
])
def test_only_a_one_or_a_yes_allows_recording_and_the_flow_goes_on(answer, consent):
    call = asked_consent().send(answer)
    assert consents(call) == ["asked", consent]
    assert call.said[-1] == "menu"


@pytest.mark.parametrize("answer", [p.KeyPressed("0"), heard("agent please"),
                                    heard("i want to speak to a person")])
def test_the_consent_question_never_blocks_the_way_to_a_person(answer):
    call = asked_consent().send(answer)
    assert consents(call) == ["asked", "no_answer"] and call.said[-1] == "handoff"
    assert call.played().final == handoff_to(HandoffReason.CALLER_REQUEST)


def test_the_opt_out_key_at_the_consent_question_hands_over_without_a_menu():
    call = asked_consent().send(p.KeyPressed("9"))
    assert consents(call) == ["asked"]  # the session's HandOver follows the key
    call.send(p.HandOver(HandoffReason.OPTED_OUT))
    assert consents(call) == ["asked", "no_answer"] and call.said[-1] == "handoff"
    assert "menu" not in call.said
    assert call.played().final == handoff_to(HandoffReason.OPTED_OUT)


def test_a_request_over_the_disclosure_is_answered_after_the_consent():
    call = Call(ask_recording_consent=True).send(heard("where is my order")).played()
    assert call.said == ["disclosure", "recording_consent"]
    call.played().send(p.KeyPressed("1"))
    assert consents(call) == ["asked", "given"] and call.said[-1] == "order_status"


def test_a_person_asked_for_over_the_disclosure_is_not_kept_waiting_by_the_question():
    call = Call(ask_recording_consent=True).send(heard("agent please")).played()
    assert consents(call) == [] and call.said == ["disclosure", "handoff"]


def test_recording_off_never_asks():
    call = Call().played()
    assert consents(call) == [] and call.said == ["disclosure", "menu"]


def test_the_opt_out_key_is_a_digit_while_the_caller_keys_in_a_number():
    from voicebot.dialog.flow import DEFAULT_FLOW as default_path

    orders = load_checked(default_path.parent / "orders.toml")
    policy = p.Policy(orders, "en", p.PolicyConfig(opt_out_key="9"))
    policy.start()
    assert policy.opts_out("9") and not policy.opts_out("8")  # during the disclosure
    policy.step(p.PromptDone(policy.current_prompt.prompt_id))
    assert policy.opts_out("9")  # at the menu
    policy.step(p.KeyPressed("1"))  # order status: "key in your order number"
    assert orders.nodes[policy.node].slot and not policy.opts_out("9")
    assert not p.Policy(orders, "en").opts_out("9")  # no key configured
