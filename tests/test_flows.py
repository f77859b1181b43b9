"""Flow files: loading, checks that point at the place, templates, the text
matcher (a request for a person vs a mention), and the policy's new paths
(confirmation ladder, slots by speech, language choice). No I/O but files."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot import phrases
from voicebot.cli import main
from voicebot.dialog import policy as p
from voicebot.dialog.flow import DEFAULT_FLOW, FlowError, load_flow
from voicebot.dialog.flowcheck import check_flow, load_checked
from voicebot.dialog.lang import EN, KO
from voicebot.dialog.understand import interpret, joined
from voicebot.types import HandoffReason, Utterance

FLOW = load_checked(DEFAULT_FLOW)
ORDERS = DEFAULT_FLOW.parent / "orders.toml"

GOOD = """
[flow]
languages = ["en"]
start = "menu"

[intents.billing]
en = ["* (bill | invoice) *"]

[nodes.menu]
type = "ask"
prompt = "menu"
on = { billing = "bye" }
no_match = "menu"
no_input = "menu"

[nodes.bye]
type = "end"

[prompts.menu]
en = "Say billing."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    try:
        flow = load_flow(write(tmp_path, text))
    except FlowError as exc:
        return [str(pr) for pr in exc.problems]
    return [str(pr) for pr in check_flow(flow)]


def test_packaged_flows_pass_their_checks():
    for path in (DEFAULT_FLOW, ORDERS):
        assert check_flow(load_flow(path)) == [], path
    assert FLOW.languages == ("en", "ko")


def test_a_good_flow_has_no_problems(tmp_path):
    assert problems(tmp_path, GOOD) == []


@pytest.mark.parametrize(("change", "where", "line", "message"), [
    (('on = { billing = "bye" }', 'on = { billing = "nowhere" }'), "nodes.menu.on.billing", 12,
     "no node named 'nowhere'"),
    (('no_input = "menu"\n', ''), "nodes.menu", 9, "needs a no_input edge"),
    (('start = "menu"', 'start = "begin"'), "flow.start", 4, "no node named 'begin'"),
    (('type = "end"', 'type = "finish"'), "nodes.bye.type", 17, "must be one of"),
    (('en = "Say billing."', 'ko = "…"'), "nodes.menu.prompt", 11, "has no 'en' text"),
    (('on = { billing = "bye" }', 'on = { billing = "bye" }\ndtmf = { "0" = "bye" }'), "nodes.menu.dtmf.0", 13,
     "0 always reaches a person"),
    (('en = ["* (bill | invoice) *"]', 'en = ["(bill | invoice"]'), "intents.billing.en", 7, "missing ')'"),
    (('[nodes.bye]\ntype = "end"', '[nodes.bye]\ntype = "end"\n\n[nodes.lost]\ntype = "end"'), "nodes.lost", 19,
     "unreachable"),
])
def test_problems_point_at_their_place(tmp_path, change, where, line, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    found = problems(tmp_path, text)
    assert any(f"flow.toml:{line}: {where}: " in pr and message in pr for pr in found), found


def test_a_reworded_opt_out_sentence_must_name_the_key(tmp_path):
    reworded = GOOD + '\n[prompts.opt_out_key]\nen = "Press {key} to always reach our team."\n'
    assert problems(tmp_path, reworded) == []
    found = problems(tmp_path, reworded.replace("{key}", "nine"))
    assert any("prompts.opt_out_key.en: must name the key as {key}" in pr for pr in found), found


def test_syntax_errors_and_unknown_keys_are_named(tmp_path):
    assert "(syntax)" in problems(tmp_path, GOOD + "\n[nodes.x\n")[0]
    found = problems(tmp_path, GOOD.replace('prompt = "menu"', 'prompt = "menu"\nprompts = "x"'))
    assert any("nodes.menu.prompts: unknown key" in pr for pr in found)


def test_flows_check_command(tmp_path, capsys):
    assert main(["flows", "check", str(write(tmp_path, GOOD))]) == 0
    assert "ok (2 nodes, 1 questions" in capsys.readouterr().out
    assert main(["flows", "check", str(write(tmp_path, GOOD.replace('"bye" }', '"gone" }')))]) == 1
    assert "flow.toml:12: nodes.menu.on.billing: no node named 'gone'" in capsys.readouterr().err


def test_flows_test_command(tmp_path, capsys):
    cases = tmp_path / "cases.toml"
    cases.write_text('''
[[cases]]
say = "my invoice is wrong"
expect = "node:bye"
[[cases]]
say = "could you put me through to somebody please"
expect = "handoff:caller_request"
[[cases]]
say = "the agent said it was fine"
expect = "node:menu"
[[cases]]
say = "my invoice is wrong"
expect = "handoff:caller_request"
''')
    assert main(["flows", "test", str(write(tmp_path, GOOD)), str(cases)]) == 1
    out = capsys.readouterr().out
    assert "3 passed, 1 failed" in out and "FAIL my invoice is wrong" in out


@pytest.mark.parametrize(("case", "message"), [
    ('say = "my invoice is wrong"\nexpect = "bye"', "cases[1]: expect = 'bye': not an outcome of this flow"),
    ('say = "my invoice is wrong"\nexpect = "node:by"', "cases[1]: expect = 'node:by'"),
    ('say = "x"\nexpect = "handoff:someone"', "cases[1]: expect = 'handoff:someone'"),
    ('say = "x"\nexpect = "confirm"\nat = "bye"', "cases[1]: at = 'bye': the flow has no question named so "
                                                    "(its questions: menu)"),
    ('say = "x"\nexpect = "confirm"\nlanguage = "fr"', "cases[1]: language = 'fr': the flow speaks en"),
])
def test_flows_test_refuses_a_case_it_could_only_fail_and_runs_none(tmp_path, capsys, case, message):
    cases = tmp_path / "cases.toml"
    cases.write_text(f'[[cases]]\nsay = "my invoice is wrong"\nexpect = "node:bye"\n[[cases]]\n{case}\n')
    assert main(["flows", "test", str(write(tmp_path, GOOD)), str(cases)]) == 1
    out, err = capsys.readouterr()
    assert f"{cases}: {message}" in err and out == ""


def test_a_case_without_at_is_heard_at_the_first_question_after_a_greeting(tmp_path, capsys):
    greeting = GOOD.replace('start = "menu"', 'start = "hello"') + """
[nodes.hello]
type = "say"
prompt = "hello"
next = "menu"

[prompts.hello]
en = "Hello."
"""
    cases = tmp_path / "cases.toml"
    cases.write_text('[[cases]]\nsay = "my invoice is wrong"\nexpect = "node:bye"\n')
    assert main(["flows", "test", str(write(tmp_path, greeting)), str(cases)]) == 0
    assert "ok   my invoice is wrong  at menu" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "message"), [
    ("cases = 3\n", "cases.toml: cases is a list of [[cases]] tables"),
    ("[[cases]\n", "cases.toml: not valid TOML: Expected ']]' at the end of an array declaration"),
    ('[[cases]]\nsay = "x"\n', 'cases[0] needs say = "..." and expect = "..."'),
])
def test_flows_test_says_what_is_wrong_with_a_cases_file(tmp_path, capsys, text, message):
    cases = tmp_path / "cases.toml"
    cases.write_text(text)
    assert main(["flows", "test", str(write(tmp_path, GOOD)), str(cases)]) == 1
    assert message in capsys.readouterr().err


def test_a_broken_flow_stops_the_server_with_its_problems(tmp_path):
    from voicebot.app import create_app
    from voicebot.config import Settings
    from voicebot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"flow\.toml:12: nodes\.menu\.on\.billing"):
        create_app(Settings(flow=str(write(tmp_path, GOOD.replace('"bye" }', '"gone" }'))), db=str(tmp_path / "d.db")))


# --- templates -------------------------------------------------------------------
def test_templates_expand_count_and_compile():
    t = "[could you] (put me through | transfer me) to [a] (agent | person) *"
    assert phrases.count(t) == 2 * 2 * 2 * 2
    assert "could you transfer me to a person" in phrases.expand(t)
    edges, _ = phrases.fsg_edges(phrases.parse(t), 0, 1, 2)
    assert {e[3] for e in edges if len(e) == 4} == {"could", "you", "put", "me", "through", "transfer", "to", "a",
                                                     "agent", "person"}
    with pytest.raises(phrases.TemplateError):
        phrases.parse("(a | b")


# --- the text matcher ----------------------------------------------------------------
REQUESTS = [
    "could you put me through to somebody", "agent", "representative please", "a live person please",
    "is there a human i can speak with", "i want to talk to someone about my order", "operator",
    "i don't want to talk to a robot", "transfer me to customer service", "get me a human",
    # a request verb right before the person-word decides, whatever follows it
    "can i be transferred to the operator", "please let me talk to someone who works there",
    "could i have a human", "connect me with your help desk", "i'd prefer speaking with a staff member",
    "i would like an agent", "may i be connected to an associate", "take me to a representative",
    # someone asked to help, and asking to be transferred whoever to
    "can somebody help me", "can you transfer me", "transfer me please", "put me through to the front desk",
    # asking whether someone is there; help from someone; departments; a negation that is about the machine
    "is there an actual person there", "i need some help from a real person", "can i talk to tech support",
    "i'd like to talk to customer care", "no robots please just a person", "i don't want a bot",
]
MENTIONS = [
    "the agent told me my order would come yesterday", "your operator hung up on me",
    "i spoke to a person last week about this", "the representative was rude",
    "my husband is a customer service representative",
    "she told me to talk to someone in billing", "i already talked to an operator this morning",
    "the employee at the counter gave me this number", "i got help from an agent yesterday",
]


@pytest.mark.parametrize("text", REQUESTS)
def test_requests_for_a_person_in_many_words(text):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert meaning.intent == "human" and meaning.certain


# a wish to talk to someone, though who was not heard: asked about, never put through at once
UNSURE = ["i need to speak to the number of my bill", "connect me with the health desk please",
          "can you pass me to the billing team"]


@pytest.mark.parametrize("text", UNSURE)
def test_asking_to_talk_to_someone_unnamed_is_an_unsure_request(text):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert meaning.intent == "human" and not meaning.certain


@pytest.mark.parametrize("text", ["i talked to the billing team yesterday", "she said to talk to my bank",
                                  "i don't want to talk to anybody about it", "human resources sent me here",
                                  "a person at your store gave me this number"])
def test_a_story_about_talking_is_no_request(text):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert not (meaning.intent == "human" and meaning.certain)


@pytest.mark.parametrize("text", ["i tried to talk to an agent yesterday but nobody answered",
                                  "i already asked to speak to a supervisor", "i need my agent number for the form",
                                  "somebody from billing left me a voicemail",
                                  # the person-word is the subject of what follows
                                  "i want gold a specialist will phone me today",
                                  "my bill somebody would fix it"])
def test_words_that_tell_about_someone_are_marked_as_mentions(text):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert not meaning.certain or meaning.intent != "human"
    assert meaning.mention


@pytest.mark.parametrize(("text", "asks"), [
    ("a supervisor approved the return on monday", False), ("the agent on the chat gave me a code", False),
    ("someone signed for it and it vanished", False),
    ("i need someone trained in returns", True), ("somebody qualified please", True),
    ("is there somebody to talk to", True),
])
def test_a_person_word_followed_by_what_they_did_is_told_about(text, asks):
    """A past tense after a person-word tells what someone did ("a supervisor
    approved it"); "chat" after "the" is a noun, not a wish to talk. Neither is
    asked about; words that say which person is wanted still ask for one."""
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert (meaning.intent == "human") is asks
    assert meaning.certain or not asks


@pytest.mark.parametrize(("text", "intent"), [("where are my packages", "order_status"),
                                              ("nothing got delivered", "order_status"),
                                              ("i keep getting locked out of my accounts", "password_reset"),
                                              ("i need help signing in", "password_reset"),
                                              ("i can't sign into the app", "password_reset"),
                                              ("i have trouble logging in", "password_reset")])
def test_key_words_match_in_their_regular_endings(text, intent):
    assert interpret(text, EN, list(FLOW.intents.values())).intent == intent


@pytest.mark.parametrize(("text", "asks"), [
    ("i am a real estate agent", False), ("i'm an insurance agent calling about a claim", False),
    ("i'm an agent myself and i need to talk to a supervisor", True),
])
def test_saying_what_one_is_tells_about_a_person_word(text, asks):
    """Told about, so a second engine's person does not make it a clear request
    (reading.py); a request in the same breath still is one."""
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert (meaning.intent == "human" and meaning.certain) is asks
    assert meaning.mention is not asks


@pytest.mark.parametrize(("text", "asks"), [
    ("my insurance agent needs a receipt", False), ("your support staff mailed me a link", False),
    ("the game staff have it", False),
    ("can i talk to your support staff", True), ("connect me with your customer service", True),
])
def test_a_person_word_inside_a_possessive_phrase_is_told_about(text, asks):
    """"my insurance agent", "your support staff": a person-word two words after a
    possessive or "the" names someone, unless a request leads up to it."""
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert (meaning.intent == "human" and meaning.certain) is asks
    assert meaning.mention is not asks


@pytest.mark.parametrize(("text", "intent", "certain"), [
    ("the manager please", "human", True), ("the real human, please", "human", True),
    ("your operator please", "human", True), ("the agent", "human", False),  # named, no please: asked
    ("agent", "human", True), ("the agent told me", None, True),  # a bare word; a story
])
def test_a_person_named_alone_is_asked_for(text, intent, certain):
    """"The manager, please": a person-word with a determiner and nothing else but
    fillers names whom the caller wants; it tells nothing about them."""
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert (meaning.intent, meaning.certain) == (intent, certain)


@pytest.mark.parametrize("text", MENTIONS)
def test_a_person_word_is_not_a_request(text):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert not (meaning.intent == "human" and meaning.certain)


@pytest.mark.parametrize(("text", "intent", "digits"), [
    ("Could you, through some, one on the phone?", "human", ""),  # Whisper on a synthetic voice
    ("can some body help me", "human", ""),
    ("is there any one I can talk to", "human", ""),
    ("some one told me my order would come", "order_status", ""),  # joined, still a mention
    ("Some body left, a message on my phone.", None, ""),  # a story: nobody is asked for
    ("it's four one seven two", None, "4172"),  # a lone "one" is still a digit
])
def test_words_written_apart_are_read_as_one(text, intent, digits):
    meaning = interpret(text, EN, list(FLOW.intents.values()))
    assert (meaning.intent, meaning.digits) == (intent, digits)
    assert joined("some one and any body".split(), EN) == ["someone", "and", "anybody"]
    assert joined(["some", "one"], KO) == ["some", "one"], "English compounds only"


def test_mentions_still_find_what_the_caller_wants_and_digits():
    assert interpret("the agent told me my order would come", EN, list(FLOW.intents.values())).intent == "order_status"
    assert interpret("it's four one seven two", EN, []).digits == "4172"
    assert interpret("상담원 연결해 주세요", KO, list(FLOW.intents.values())).intent == "human"
    assert interpret("배송 조회 부탁해요", KO, list(FLOW.intents.values())).intent == "order_status"


@pytest.mark.parametrize(("text", "answer"), [
    ("예고 탁을 연결", "yes"),  # Whisper's "예 부탁드려요": the answer written onto the next syllable
    ("네 마스크 플리드", "yes"),
    ("응", "yes"),
    ("아님, 왠지 아님", "no"),
    ("아니 괜찮아요", "no"),
    ("아뇨", "no"),
])
def test_a_korean_answer_is_read_from_the_start_of_its_first_word(text, answer):
    assert interpret(text, KO, []).intent == answer


def test_a_korean_answer_stem_answers_only_a_yes_no_question():
    """At an open question only a whole answer said alone counts ("예약 확인" is a booking)."""
    assert interpret("예고 탁을 연결", KO, [], answers=False).intent is None
    assert interpret("아님, 왠지 아님", KO, [], answers=False).intent is None
    assert interpret("응", KO, [], answers=False).intent == "yes"


# --- the policy's ladder, slots and language ------------------------------------------
def heard(text: str, conf: float = 0.97) -> p.Heard:
    return p.Heard(Utterance(text, conf, 0, 1))


def played(policy: p.Policy) -> list[p.Action]:
    prompt = policy.current_prompt
    assert prompt is not None
    return policy.step(p.PromptDone(prompt.prompt_id))


def listening(flow=FLOW, language="en") -> p.Policy:
    policy = p.Policy(flow, language)
    policy.start()
    played(policy)
    played(policy)  # the menu
    return policy


@pytest.mark.parametrize(("text", "at_menu", "where_yes_is_an_answer"), [
    ("okay can i just get a danger", None, "yes"),  # a request begun, misheard: not an answer
    ("yeah so i was wondering about my bill", None, "yes"),
    ("no i don't know what i want", None, "no"),
    ("okay", "yes", "yes"), ("no thank you", "goodbye", "goodbye"),  # said alone, as ever
    ("okay where is my order", "order_status", "order_status"),
])
def test_a_yes_or_no_word_opening_a_sentence_answers_only_a_yes_no_question(text, at_menu,
                                                                            where_yes_is_an_answer):
    """At "How can I help you?" a yes or no word counts only said alone; at "Anything
    else?" (which takes yes and no) and while confirming it still opens an answer."""
    policy = listening()
    assert policy.understand(text).intent == at_menu
    policy.node = "anything_else"
    assert policy.understand(text).intent == where_yes_is_an_answer
    if where_yes_is_an_answer in ("yes", "no"):
        policy.node, policy.confirming = "menu", "human"
        assert policy.understand(text).intent == where_yes_is_an_answer


@pytest.mark.parametrize(("answer", "said"), [("yes please", "handoff"), ("no", "menu"), ("agent", "handoff")])
def test_an_unsure_request_is_confirmed_once(answer, said):
    policy = listening()
    actions = policy.step(heard("maybe a person could sort this out"))  # a person-word, no clear request
    assert [a.name for a in actions if isinstance(a, p.Say)] == ["confirm_human"]
    assert policy.listen_context == "yesno"
    played(policy)
    actions = policy.step(heard(answer))
    assert [a.name for a in actions if isinstance(a, p.Say)] == [said]
    if said == "handoff":
        assert policy.handoff_reason is HandoffReason.CALLER_REQUEST


def test_a_request_heard_with_middling_confidence_is_confirmed_not_reprompted():
    policy = listening()
    actions = policy.step(heard("agent please", conf=0.45))
    assert [a.name for a in actions if isinstance(a, p.Say)] == ["confirm_human"]
    played(policy)
    assert [a.name for a in policy.step(p.KeyPressed("1")) if isinstance(a, p.Say)] == ["handoff"]


def test_a_spoken_order_number_fills_the_slot():
    flow = load_checked(ORDERS)
    policy = listening(flow)
    policy.step(p.KeyPressed("1"))
    played(policy)
    assert policy.listen_context == "digits"
    said = policy.step(heard("four one seven two"))
    assert said[0].name == "confirm_slot" and "4 1 7 2" in said[0].text
    played(policy)
    actions = policy.step(heard("yes"))
    assert actions == [p.Lookup("http://127.0.0.1:8089/orders", {"order_number": "4172"}, 3.0)]
    answer = policy.step(p.LookupDone(True, {"status": "is on its way"}))
    assert answer[0].text == "Your order 4 1 7 2 is on its way."


def test_a_language_choice_node(tmp_path):
    flow = load_checked(write(tmp_path, """
[flow]
languages = ["en", "ko"]
start = "choose"
[prompts.choose]
en = "For English press 1. 한국어는 2번을 누르세요."
ko = "For English press 1. 한국어는 2번을 누르세요."
[nodes.choose]
type = "language"
prompt = "choose"
dtmf = { "1" = "en", "2" = "ko" }
next = "bye"
[nodes.bye]
type = "end"
"""))
    policy = listening(flow)  # the disclosure, then the choice
    actions = policy.step(p.KeyPressed("2"))
    assert policy.language == "ko" and actions[0].text == KO.prompts["goodbye"]


def test_a_flow_that_maps_the_opt_out_key_is_refused(tmp_path):
    from voicebot.config import Settings
    from voicebot.errors import ConfigError
    from voicebot.flowrun import load_settings_flow

    path = write(tmp_path, GOOD.replace('on = { billing = "bye" }', 'on = { billing = "bye" }\ndtmf = { "9" = "bye" }'))
    with pytest.raises(ConfigError, match="opts the caller out"):
        load_settings_flow(Settings(flow=str(path)))
    assert load_settings_flow(Settings(flow=str(path), opt_out_key="")).name
