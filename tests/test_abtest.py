"""A/B tests: deterministic assignment, what a variant may change, the
comparison's statistics, and a variant changing a real call."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from voicebot.app import REGISTRY
from voicebot.asr.fake import FakeEngine
from voicebot.audio.wav import read_wav
from voicebot.config import Settings
from voicebot.dialog.flow import DEFAULT_FLOW
from voicebot.dialog.flowcheck import load_checked
from voicebot.errors import ConfigError
from voicebot.events import CallEventBus, CallTagged
from voicebot.ops.abtest import Experiments, compare, two_proportion_p, wilson
from voicebot.ops.calls import CallFacts, SqlCallSource
from voicebot.ops.report import build_report
from voicebot.replay.client import ReplayOptions, replay
from voicebot.types import Transcript

from .conftest import FIXTURES

BASE = Settings()
THRESHOLD = {"threshold": {"lenient": {"weight": 1, "confidence_threshold": 0.5},
                           "strict": {"weight": 3, "confidence_threshold": 0.95}}}


def test_assignment_is_deterministic_and_follows_the_split():
    experiment = Experiments.parse(THRESHOLD, BASE).experiments[0]
    ids = [f"call-{i}" for i in range(4000)]
    first = [experiment.assign(i).name for i in ids]
    assert first == [experiment.assign(i).name for i in ids]  # same id, same variant
    share = first.count("lenient") / len(ids)
    assert 0.22 < share < 0.28  # weights 1:3
    other = Experiments.parse({"other": THRESHOLD["threshold"]}, BASE).experiments[0]
    assert [other.assign(i).name for i in ids] != first  # experiments split independently


@pytest.mark.parametrize(("raw", "problem"), [
    ({"t": {"a": {"max_calls": 3}, "b": {}}}, "cannot vary per call"),
    ({"t": {"a": {"weight": 0}, "b": {}}}, "weight must be a positive number"),
    ({"t": {"a": {}}}, "two or more variants"),
    ({"T": {"a": {}, "b": {}}}, "lower-case name"),
    ({"t": {"a": {"confidence_threshold": 1.5}, "b": {}}}, "between 0 and 1"),
    ({"t": {"a": {"confidence_threshold": "high"}, "b": {}}}, "expected float"),
    ({"t": {"a": {"disclosure_text": " "}, "b": {}}}, "cannot be empty"),
    ({"t": {"a": {"no_input_turns": 1}, "b": {}}, "u": {"a": {"no_input_turns": 3}, "b": {}}},
     "another experiment"),
])
def test_bad_experiments_are_refused_with_the_reason(raw, problem):
    with pytest.raises(ConfigError, match=problem):
        Experiments.parse(raw, BASE)


def test_a_call_runs_with_its_variant_and_is_labelled():
    from voicebot.call.session import CallServices

    experiments = Experiments.parse(THRESHOLD, BASE)
    bus = CallEventBus()
    seen: list[CallTagged] = []
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, CallTagged) else None)
    flow = load_checked(DEFAULT_FLOW)
    services = CallServices(BASE, None, None, None, flow, bus)  # type: ignore[arg-type]
    variant = experiments.experiments[0].assign("c1")
    mine = experiments.services_for("c1", services)
    assert mine.settings.confidence_threshold == variant.changes["confidence_threshold"]
    assert mine.store is services.store and services.settings is BASE  # nothing shared changes
    assert seen == [CallTagged("c1", "ab_threshold", variant.name, at=seen[0].at)]


def test_statistics():
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.27 < high < 0.29  # the textbook 0/10 Wilson interval: [0, 0.278]
    assert two_proportion_p(40, 50, 20, 50) < 0.001
    assert two_proportion_p(26, 50, 24, 50) > 0.5
    assert two_proportion_p(5, 5, 5, 5) == 1.0


def _arm(variant: str, completed: int, n: int) -> list[CallFacts]:
    return [CallFacts(f"{variant}-{i}", 0.0, 1.0, "completed" if i < completed else "handoff",
                      "" if i < completed else "low_confidence", labels={"ab_t": variant})
            for i in range(n)]


def test_compare_says_when_a_difference_is_significant():
    big = compare(_arm("a", 20, 50) + _arm("b", 40, 50), {"t": "a"})["t"]
    assert big["control"] == "a"
    b = big["against_control"]["b"]["containment"]
    assert b["difference"] == 0.4 and b["significant"] and b["p_value"] < 0.001
    arms = big["variants"]
    assert arms["b"]["containment"]["ci95"][0] > arms["a"]["containment"]["ci95"][1]
    small = compare(_arm("a", 5, 8) + _arm("b", 8, 8))["t"]["against_control"]["b"]["containment"]
    assert not small["significant"] and not small["enough_calls"]  # too few calls to say
    close = compare(_arm("a", 24, 50) + _arm("b", 26, 50))["t"]["against_control"]["b"]
    assert not close["containment"]["significant"]
    # p ≈ 0.04: significant alone, not as one of two comparisons with the control
    two = _arm("a", 25, 50) + _arm("b", 35, 50)
    assert compare(two)["t"]["against_control"]["b"]["containment"]["significant"]
    three = compare(two + _arm("c", 25, 50))["t"]
    assert three["alpha_per_comparison"] == 0.025
    assert not three["against_control"]["b"]["containment"]["significant"]


@pytest.mark.e2e
async def test_variants_change_real_calls_and_the_report_compares_them(start_server, tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text('[threshold]\nlenient = { confidence_threshold = 0.5 }\n'
                    'strict = { confidence_threshold = 0.95 }\n'
                    '[disclosure]\nusual = {}\n'
                    'short = { disclosure_text = "This is an automated assistant. Press 9 for a person." }\n')
    engine = FakeEngine(lambda audio: Transcript("agent please", 0.7))
    server = await start_server(engine, experiments=str(path))
    experiment, wording = Experiments.from_file(path, server.settings).experiments
    combos: dict[tuple[str, str], str] = {}
    for i in range(200):  # call ids that land in chosen variants of both experiments
        combos.setdefault((experiment.assign(f"ab-{i}").name, wording.assign(f"ab-{i}").name),
                          f"ab-{i}")
    ids = {"lenient": combos["lenient", "short"], "strict": combos["strict", "usual"]}
    samples, rate = read_wav(FIXTURES / "en_human_person.wav")
    for variant, call_id in ids.items():
        result = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
            call_id=call_id, marks="immediate", speed=0, max_call_s=30, confirm="yes"))
        assert result.outcome == "handoff:caller_request"
        # each caller hears their variant's wording, and the record says which
        wording_heard = ("This is an automated assistant. Press 9 for a person." if variant == "lenient"
                         else server.app[REGISTRY].services.flow.disclosure("en", "9"))
        assert result.of("prompt")[0]["text"] == wording_heard
        assert (await server.record(call_id)).disclosure_text == wording_heard
    now = time.time()
    for _ in range(200):
        report = await build_report(SqlCallSource(server.settings.db), now - 600, now + 60)
        arms = report["ab_tests"].get("threshold", {}).get("variants", {})
        if sum(a["calls"] for a in arms.values()) == 2:
            break
        await asyncio.sleep(0.02)
    test = report["ab_tests"]["threshold"]
    assert set(test["variants"]) == {"lenient", "strict"}
    assert json.dumps(test)  # JSON-ready


def test_serve_refuses_a_bad_experiments_file(tmp_path, capsys):
    from voicebot.cli import main

    bad = tmp_path / "ab.toml"
    bad.write_text("[t]\na = { max_calls = 1 }\nb = {}\n")
    assert main(["serve", "--port", "0", "--config", _config(tmp_path, bad)]) == 2
    assert "cannot vary per call" in capsys.readouterr().err


def _config(tmp_path, experiments) -> str:
    config = tmp_path / "voicebot.toml"
    config.write_text(f'experiments = "{experiments}"\ndb = "{tmp_path / "c.db"}"\n')
    return str(config)
