"""dialog.question: the question being answered, on its own (the policy builds one
for each moment; tests/test_second_opinion.py covers it through the policy)."""

from __future__ import annotations

import dataclasses

import pytest

from voicebot.dialog.flow import DEFAULT_FLOW
from voicebot.dialog.flowcheck import load_checked
from voicebot.dialog.question import Question, accept_threshold, edge
from voicebot.dialog.reading import Reading

FLOW = load_checked(DEFAULT_FLOW)
ORDERS = load_checked(DEFAULT_FLOW.parent / "orders.toml")


def at(flow, name: str, confirming: str = "") -> Question:
    return Question(flow, "en", flow.nodes[name], confirming)


def test_a_question_is_a_value() -> None:
    question = at(FLOW, "menu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        question.confirming = "human"  # type: ignore[misc]
    assert question == at(FLOW, "menu")


def test_edges_and_thresholds_come_from_the_node() -> None:
    menu, anything_else = FLOW.nodes["menu"], FLOW.nodes["anything_else"]
    assert edge(menu, "order_status") == "order_status"
    assert edge(anything_else, "no") == "goodbye" and edge(menu, "no") is None
    unset = dataclasses.replace(menu, ladder=dataclasses.replace(menu.ladder, accept=None))
    assert accept_threshold(unset, 0.42) == 0.42  # the configured one
    own = dataclasses.replace(menu, ladder=dataclasses.replace(menu.ladder, accept=0.7))
    assert accept_threshold(own, 0.42) == 0.7


def test_what_it_asks_a_second_opinion_about() -> None:
    menu = at(FLOW, "menu")
    assert menu.wants_second_opinion(Reading(menu.understand("no thank you"), 0.99))  # it would hang up
    assert menu.wants_second_opinion(Reading(menu.understand("where is my order"), 0.99))  # checked too
    assert menu.wants_second_opinion(Reading(menu.understand(""), 0.0))
    slot = next(n for n in ORDERS.nodes.values() if n.slot)
    asking_digits = Question(ORDERS, "en", slot)
    assert not asking_digits.wants_second_opinion(Reading(asking_digits.understand("four one"), 0.1))
    assert not Question(FLOW, "en", None).wants_second_opinion(Reading(menu.understand(""), 0.0))


def test_what_the_grammar_is_sure_of_alone() -> None:
    """Checked or not, a routine reading over the threshold is one the grammar is sure of
    (a joined turn so read is not decoded again in parts); a person, a goodbye, an unsure
    or empty reading is not."""
    menu = at(FLOW, "menu")
    assert menu.settled(Reading(menu.understand("where is my order"), 0.9))
    assert not menu.settled(Reading(menu.understand("where is my order"), 0.5))
    assert not menu.settled(Reading(menu.understand("agent please"), 0.99))
    assert not menu.settled(Reading(menu.understand("no thank you"), 0.99))
    assert not menu.settled(Reading(menu.understand(""), 0.99))


def test_the_prompt_and_the_check_follow_the_question() -> None:
    menu, confirming = at(FLOW, "menu"), at(FLOW, "menu", confirming="human")
    assert "password" in menu.opinion_prompt() and menu.opinion_check("i forgot my password")
    assert confirming.opinion_prompt() == "Do you want me to connect you to a person?"
    assert confirming.opinion_check("yes") == ""
