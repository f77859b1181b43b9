"""A flow's own A/B tests: variants of prompt texts, branches and question
thresholds. The checker places each problem at its line; assignment is the
ops layer's hash; every variant's prompts are rendered before the first call;
real calls in two variants hear different prompts, take different branches and
use different thresholds, and the report compares the variants."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from voicebot.app import REGISTRY
from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.cli import main
from voicebot.config import Settings
from voicebot.dialog import policy as p
from voicebot.dialog.flow import DEFAULT_FLOW, FlowError, load_flow
from voicebot.dialog.flowcheck import check_flow, load_checked
from voicebot.dialog.varied import with_variants
from voicebot.flowrun import prompt_texts
from voicebot.ops.abtest import controls_of, flow_experiment
from voicebot.ops.calls import SqlCallSource
from voicebot.ops.report import build_report, render
from voicebot.types import Transcript, Utterance

from .call_client import Caller
from .conftest import FIXTURES

SHORT_MENU = "Orders or passwords?"
EN_MENU = load_flow(DEFAULT_FLOW).prompt("menu", "en")
EXPERIMENTS = f"""
# --- experiments -----------------------------------------------------------
[experiments.wording.usual]

[experiments.wording.short]
prompts.menu.en = "{SHORT_MENU}"
prompts.menu.ko = "주문이나 비밀번호?"

[experiments.branch.ask_more]
weight = 3

[experiments.branch.straight_out]
weight = 1
nodes.order_status.next = "goodbye"

[experiments.ladder.usual]

[experiments.ladder.strict]
nodes.menu.confidence.accept = 0.9
"""


def flow_text(extra: str = EXPERIMENTS) -> str:
    return DEFAULT_FLOW.read_text() + extra


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, extra: str) -> list[str]:
    try:
        flow = load_flow(write(tmp_path, flow_text(extra)))
    except FlowError as exc:
        return [str(pr) for pr in exc.problems]
    return [str(pr) for pr in check_flow(flow)]


def line_of(extra: str, needle: str) -> int:
    """The line of `needle` in the flow file the test writes."""
    return flow_text(extra).splitlines().index(needle) + 1


def test_the_example_experiments_pass_and_each_variant_changes_what_it_says(tmp_path):
    flow = load_checked(write(tmp_path, flow_text()))
    assert [e.name for e in flow.experiments] == ["wording", "branch", "ladder"]
    varied = with_variants(flow, {"wording": "short", "branch": "straight_out", "ladder": "strict"})
    assert varied.prompt("menu", "en") == SHORT_MENU and varied.prompt("menu", "ko") == "주문이나 비밀번호?"
    assert varied.nodes["order_status"].next == "goodbye"
    assert varied.nodes["menu"].ladder.accept == 0.9
    assert varied.nodes["menu"].ladder.confirm == flow.nodes["menu"].ladder.confirm  # the rest kept
    assert varied.nodes["menu"].on == flow.nodes["menu"].on
    # the flow itself is untouched, and the control variants are the flow as written
    assert flow.prompt("menu", "en") != SHORT_MENU and flow.nodes["order_status"].next == "anything_else"
    assert with_variants(flow, {"wording": "usual", "branch": "ask_more"}).nodes == flow.nodes
    assert controls_of(Settings(), flow) == {"wording": "usual", "branch": "ask_more",
                                             "ladder": "usual"}


def test_a_node_only_a_variant_leads_to_is_not_unreachable(tmp_path):
    extra = EXPERIMENTS + """
[experiments.detour.none]
[experiments.detour.thanks]
nodes.password_reset.next = "thanks"

[nodes.thanks]
type = "say"
prompt = "thanks"
next = "goodbye"

[prompts.thanks]
en = "Thanks for asking."
ko = "감사합니다."
"""
    assert problems(tmp_path, extra) == []
    lost = extra.replace('nodes.password_reset.next = "thanks"', "")
    assert any("nodes.thanks: unreachable" in pr for pr in problems(tmp_path, lost))


BAD = [
    ('nodes.order_status.next = "goodbye"', 'nodes.order_status.next = "nowhere"',
     "experiments.branch.straight_out.nodes.order_status.next", "no node named 'nowhere'"),
    ("nodes.menu.confidence.accept = 0.9", "nodes.menu.confidence.accept = 0.1",
     "experiments.ladder.strict.nodes.menu.confidence.accept", "confirm <= accept"),
    ("nodes.menu.confidence.accept = 0.9", 'nodes.menu.confidence.accept = "high"',
     "experiments.ladder.strict.nodes.menu.confidence.accept", "a number"),
    ("nodes.menu.confidence.accept = 0.9", "nodes.goodbye.confidence.accept = 0.9",
     "experiments.ladder.strict.nodes.goodbye.confidence", "thresholds belong to ask nodes"),
    ("nodes.menu.confidence.accept = 0.9", 'nodes.menu.type = "end"',
     "experiments.ladder.strict.nodes.menu.type", "a variant changes only"),
    ("nodes.menu.confidence.accept = 0.9", 'nodes.nemu.next = "menu"',
     "experiments.ladder.strict.nodes.nemu", "no node named 'nemu'"),
    ("nodes.menu.confidence.accept = 0.9", 'nodes.menu.dtmf."0" = "goodbye"',
     "experiments.ladder.strict.nodes.menu.dtmf.0", "0 always reaches a person"),
    ('prompts.menu.ko = "주문이나 비밀번호?"', 'prompts.menu.ko = " "',
     "experiments.wording.short.prompts.menu.ko", "a prompt cannot be empty"),
    ('prompts.menu.en = "Orders or passwords?"', 'nodes.menu.prompt = "menu_short"',
     "experiments.wording.short.nodes.menu.prompt", "prompt 'menu_short' has no 'en' text"),
    ("weight = 1", "weight = 0", "experiments.branch.straight_out.weight",
     "must be a positive number"),
    ("[experiments.wording.short]", "[experiments.wording.Short]", "experiments.wording.Short",
     "a variant's name is a lower-case identifier"),
    ("nodes.menu.confidence.accept = 0.9", 'nodes.order_status.next = "menu"',
     "experiments.ladder.strict.nodes.order_status.next", "experiment 'branch' changes this too"),
]


@pytest.mark.parametrize(("old", "new", "where", "message"), BAD)
def test_bad_experiments_are_refused_at_their_line(tmp_path, old, new, where, message):
    extra = EXPERIMENTS.replace(old, new)
    assert extra != EXPERIMENTS
    line = line_of(extra, new)
    found = problems(tmp_path, extra)
    assert any(f"flow.toml:{line}: {where}" in pr and message in pr for pr in found), found


def test_an_experiment_needs_two_variants_and_the_command_says_where(tmp_path, capsys):
    extra = EXPERIMENTS + "\n[experiments.lonely.only]\n"
    found = problems(tmp_path, extra)
    line = line_of(extra, "[experiments.lonely.only]")
    assert any(f"flow.toml:{line}: experiments.lonely" in pr and "two or more variants" in pr
               for pr in found), found
    path = write(tmp_path, flow_text(extra))
    assert main(["flows", "check", str(path)]) == 1
    assert "experiments.lonely" in capsys.readouterr().err
    assert main(["flows", "check", str(write(tmp_path, flow_text()))]) == 0


def test_assignment_is_the_ops_hash_deterministic_and_follows_the_split(tmp_path):
    flow = load_checked(write(tmp_path, flow_text()))
    branch = flow_experiment(flow.experiments[1])
    ids = [f"call-{i}" for i in range(4000)]
    first = [branch.assign(i).name for i in ids]
    assert first == [branch.assign(i).name for i in ids]
    assert 0.22 < first.count("straight_out") / len(ids) < 0.28  # weights 3:1
    wording = [flow_experiment(flow.experiments[0]).assign(i).name for i in ids]
    assert 0.47 < wording.count("short") / len(ids) < 0.53
    assert wording != first  # each experiment splits on its own


def test_every_variant_prompt_is_rendered_before_calls(tmp_path):
    flow = load_checked(write(tmp_path, flow_text()))
    assert SHORT_MENU in prompt_texts(Settings(), flow, "en")
    assert "주문이나 비밀번호?" in prompt_texts(Settings(), flow, "ko")
    assert flow.prompt("menu", "en") in prompt_texts(Settings(), flow, "en")


def test_a_strict_variant_does_not_accept_what_the_control_accepts(tmp_path):
    flow = load_checked(write(tmp_path, flow_text()))
    for variant, expected in (("usual", "order_status"), ("strict", "didnt_catch")):
        policy = p.Policy(with_variants(flow, {"ladder": variant}), "en")
        policy.step(p.PromptDone(policy.start()[0].prompt_id))
        policy.step(p.PromptDone(policy.current_prompt.prompt_id))
        said = policy.step(p.Heard(Utterance("where is my order", 0.75, 0, 1)))
        assert [a.name for a in said if isinstance(a, p.Say)] == [expected]


def _ids_for(flow, wanted: list[dict[str, str]]) -> list[str]:
    """Call ids the ops hash puts in the wanted variants of every experiment."""
    splits = [flow_experiment(e) for e in flow.experiments]
    found: dict[int, str] = {}
    for i in range(2000):
        call_id = f"exp-{i}"
        got = {s.name: s.assign(call_id).name for s in splits}
        for n, want in enumerate(wanted):
            if got == want:
                found.setdefault(n, call_id)
    return [found[n] for n in range(len(wanted))]


async def _settled(server, calls: int, flow) -> dict:
    now = time.time()
    for _ in range(300):
        report = await build_report(SqlCallSource(server.settings.db), now - 600, now + 60,
                                    controls=controls_of(server.settings, flow))
        if report["kpis"]["ended"] >= calls:
            return report
        await asyncio.sleep(0.05)
    raise AssertionError("the calls were not stored")


@pytest.mark.e2e
async def test_real_calls_in_two_variants_hear_and_branch_differently(start_server, tmp_path):
    path = write(tmp_path, flow_text())
    flow = load_checked(path)
    # every caller says "where is my order", heard with confidence 0.75
    engine = FakeEngine(lambda audio: Transcript("where is my order", 0.75))
    server = await start_server(engine, flow=str(path))
    prompts = server.app[REGISTRY].services.prompts  # every variant's text, before any call
    assert all(prompts.prerendered("en-us", SHORT_MENU, rate) for rate in (8000, 16000))
    control, variant = _ids_for(flow, [
        {"wording": "usual", "branch": "ask_more", "ladder": "usual"},
        {"wording": "short", "branch": "straight_out", "ladder": "strict"}])
    speech, _ = read_wav(FIXTURES / "en_order_status.wav")
    async with Caller(server.ws, call_id=control) as call:
        assert (await call.prompt("menu"))["text"] == EN_MENU
        call.say(speech)
        await call.prompt("order_status")  # 0.75 passes the usual threshold
        await call.prompt("anything_else")  # and the usual branch asks for more
        await call.hang_up()
    async with Caller(server.ws, call_id=variant) as call:
        assert (await call.prompt("menu"))["text"] == SHORT_MENU
        call.say(speech)
        await call.prompt("didnt_catch")  # 0.75 is under the strict variant's 0.9
        await call.keys("1")
        await call.prompt("order_status")
        await call.prompt("goodbye")  # the straight_out branch ends the call here
        assert (await call.event("end"))["reason"] == "completed"
    report = await _settled(server, 2, flow)
    tests = report["ab_tests"]
    for name, arms in (("wording", {"usual", "short"}), ("branch", {"ask_more", "straight_out"}),
                       ("ladder", {"usual", "strict"})):
        assert set(tests[name]["variants"]) == arms
    branch = tests["branch"]
    assert branch["control"] == "ask_more"
    assert branch["variants"]["straight_out"]["containment"]["count"] == 1
    assert branch["variants"]["ask_more"]["containment"]["count"] == 0  # it hung up
    assert not branch["against_control"]["straight_out"]["containment"]["significant"]
    assert "A/B test branch (control: ask_more)" in render(report, "table")
    for call_id in (control, variant):  # the variant is stored with the call
        record = await server.record(call_id)
        assert record is not None and record.ended_at is not None



def test_text_cases_can_run_in_a_variant(tmp_path, capsys):
    cases = tmp_path / "cases.toml"
    cases.write_text('''
[[cases]]
say = "where is my order"
expect = "node:order_status"
[[cases]]
say = "where is my order"
expect = "node:password_reset"
variants = { routing = "swapped" }
''')
    swapped = EXPERIMENTS + """
[experiments.routing.usual]
[experiments.routing.swapped]
nodes.menu.on.order_status = "password_reset"
"""
    flow = str(write(tmp_path, flow_text(swapped)))
    assert main(["flows", "test", flow, str(cases)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    cases.write_text('''
[[cases]]
say = "where is my order"
expect = "node:order_status"
variants = { wording = "long" }
''')
    assert main(["flows", "test", flow, str(cases)]) == 1
    assert "no experiment 'wording' with a variant 'long'" in capsys.readouterr().err


def test_a_name_in_both_the_flow_and_the_experiments_file_stops_the_server(tmp_path):
    from voicebot.app import create_app
    from voicebot.errors import ConfigError

    file = tmp_path / "ab.toml"
    file.write_text("[ladder]\nusual = {}\nlow = { confidence_threshold = 0.5 }\n")
    settings = Settings(flow=str(write(tmp_path, flow_text())), experiments=str(file),
                        db=str(tmp_path / "c.db"))
    with pytest.raises(ConfigError, match="ladder: named by the flow and by the experiments file"):
        create_app(settings)


def test_each_call_is_labelled_with_its_variants_and_runs_with_them(tmp_path):
    from voicebot.call.session import CallServices
    from voicebot.events import CallEventBus, CallTagged
    from voicebot.ops.abtest import vary_flow

    flow = load_checked(write(tmp_path, flow_text()))
    bus, seen = CallEventBus(), []
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, CallTagged) else None)
    services = CallServices(Settings(), None, None, None, flow, bus)  # type: ignore[arg-type]
    mine = vary_flow("exp-7", services)
    tags = {e.key: e.value for e in seen}
    assert tags == {f"ab_{e.name}": flow_experiment(e).assign("exp-7").name for e in flow.experiments}
    assert mine.flow == with_variants(flow, {k.removeprefix("ab_"): v for k, v in tags.items()})
    assert services.flow is flow  # the shared flow is never changed
    seen.clear()  # names the experiments file runs are left to it
    assert vary_flow("exp-7", services, taken={"wording", "branch", "ladder"}) is services
    assert seen == []
