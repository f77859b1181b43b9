"""Adaptive end of turn, with fakes: the endpointer's pauses and decisions,
the rule that turns what was heard into a pause limit, the runner's partial
results in order with the audio, and the session ending a turn early (or not)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from voicebot.asr.fake import FakeEngine
from voicebot.asr.runner import AsrRunner
from voicebot.audio.vad import Endpointer, SpeechEnded, SpeechPaused, VadConfig
from voicebot.call.turns import COMPLETE_CONFIDENCE, TurnTiming, pause_limit
from voicebot.types import Partial, Transcript


def push(ep: Endpointer, pattern: str) -> list:
    events: list = []
    for c in pattern:
        events += ep.push(np.zeros(160, np.int16), c == "x")
    return events


def adaptive() -> Endpointer:
    return Endpointer(VadConfig(start_ms=20, hangover_ms=200, pause_ms=60, preroll_ms=20))


def test_pauses_are_numbered_and_reported_again_while_they_last_and_the_hangover_still_ends():
    ep = adaptive()
    events = push(ep, "xxxx" + "..." + "x" + "...")
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    assert [p.pause for p in pauses] == [1, 2]  # one per pause, numbered
    assert ep.speaking
    events = push(ep, "." * 7)
    assert [p.pause for p in events if isinstance(p, SpeechPaused)] == [2, 2]  # at 6 and 9 quiet frames
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and not ep.speaking  # 10 frames = 200 ms of silence in all
    assert not ends[0].early
    assert ends[0].pause == 2  # the turn ended in pause 2: no speech since it was reported
    assert ends[0].silence == pytest.approx(0.2)  # the hangover's silence waited


def test_deciding_zero_ends_the_turn_at_once_during_the_same_pause():
    ep = adaptive()
    push(ep, "xxxx...")
    ended = ep.decide(1, 0)
    assert len(ended) == 1 and isinstance(ended[0], SpeechEnded) and not ended[0].forced
    assert ended[0].early and ended[0].pause == 1
    assert ended[0].at == pytest.approx(7 * 0.02)
    assert ended[0].silence == pytest.approx(3 * 0.02)  # ended in the pause, after its 60 ms
    assert not ep.speaking


def test_a_turn_ended_without_a_reported_pause_names_none():
    fixed = Endpointer(VadConfig(start_ms=20, hangover_ms=200, preroll_ms=20))  # no pauses reported
    ends = [e for e in push(fixed, "xxxx" + "." * 10) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and ends[0].pause == 0
    longest = Endpointer(VadConfig(start_ms=20, hangover_ms=200, pause_ms=60, max_utterance_ms=100))
    cut = [e for e in push(longest, "x" * 5) if isinstance(e, SpeechEnded)]
    assert cut[0].forced and cut[0].pause == 0 and cut[0].silence == 0  # cut while speaking
    quiet_cut = [e for e in push(longest, "xxx..") if isinstance(e, SpeechEnded)]
    assert quiet_cut[0].forced and quiet_cut[0].silence == 0  # cut at the limit in a short silence: not a wait
    push(longest, "xx.")  # a new turn, hung up 20 ms into a silence: no pause reported yet
    hung_up = longest.flush()[0]
    assert hung_up.pause == 0 and hung_up.silence == 0  # nothing waited for


def test_a_stale_decision_is_ignored_once_the_caller_spoke_again():
    ep = adaptive()
    push(ep, "xxxx...x")
    assert ep.decide(1, 0) == [] and ep.speaking
    push(ep, "...")
    assert ep.decide(1, 0) == []  # pause 2 now
    assert len(ep.decide(2, 0)) == 1


def test_a_longer_limit_keeps_listening_through_the_pause_then_resets():
    ep = adaptive()
    push(ep, "xxxx...")
    assert ep.decide(1, 400) == []
    assert not any(isinstance(e, SpeechEnded) for e in push(ep, "." * 15))  # 18 quiet frames < 20
    push(ep, "x...")  # speech again: the pause after it gets the default 200 ms back
    ends = [e for e in push(ep, "." * 7) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and not ends[0].early
    assert ends[0].silence == pytest.approx(0.2)


def test_voiced_frames_too_few_to_start_speech_tell_how_soon_they_would():
    ep = Endpointer(VadConfig(start_ms=60, hangover_ms=200, preroll_ms=60))
    assert ep.starting_in() is None  # quiet
    push(ep, "x")
    assert ep.starting_in() == pytest.approx(0.04)  # two more voiced frames start speech
    push(ep, ".")
    assert ep.starting_in() is None  # a blip: quiet again
    push(ep, "xxx")
    assert ep.speaking and ep.starting_in() is None  # speech, not a start under way


def test_set_turn_changes_both_silences_and_zero_pause_means_fixed():
    ep = adaptive()
    ep.set_turn(hangover_ms=100, pause_ms=0)
    events = push(ep, "xx" + "." * 5)
    assert not any(isinstance(e, SpeechPaused) for e in events)
    assert [e for e in events if isinstance(e, SpeechEnded)]


@pytest.mark.parametrize(("heard", "limit"), [
    (None, None),  # the engine cannot say
    (Partial("", 0.0, False), None),  # nothing heard
    (Partial("operator", 0.85, True), 0),  # a whole phrase: end now
    (Partial("operator", COMPLETE_CONFIDENCE - 0.01, True), None),  # a guess: the hangover
    (Partial("i want to speak", 0.8, False), 800),  # mid-phrase: wait longer
    (Partial("the order never been", 0.02, False), None),  # other speech
])
def test_what_was_heard_sets_the_pause_limit(heard, limit):
    assert pause_limit(heard, TurnTiming(500, 200, 800)) == limit


def test_timing_overrides_and_pause():
    t = TurnTiming(500, 200, 800).overridden(None, 150, 1200)
    assert (t.hangover_ms, t.complete_ms, t.mid_phrase_ms, t.pause_ms) == (500, 150, 1200, 150)
    assert TurnTiming(500, 0, 800).pause_ms == 0


async def test_partial_comes_after_the_audio_fed_before_it():
    engine = FakeEngine([Transcript("yes", 0.9)], partial=lambda audio: Partial(str(len(audio)), 1.0, True))
    with ThreadPoolExecutor(2) as pool:
        recognition = AsrRunner(engine, pool).open("yesno")
        recognition.feed(b"\x00" * 320)
        recognition.feed(b"\x00" * 320)
        heard = await recognition.partial()
        recognition.feed(b"\x00" * 100)
        assert heard == Partial("640", 1.0, True)
        assert (await recognition.finish()).text == "yes"
        assert await recognition.partial() is None  # the utterance is over
    assert engine.contexts == ["yesno"] and engine.received == [740]


async def test_an_engine_without_partials_gives_no_opinion():
    class Plain:
        def accept(self, pcm: bytes) -> None: ...
        def finish(self) -> Transcript: return Transcript("", 0.0)

    class PlainEngine(FakeEngine):
        def stream(self, context: str = ""):  # type: ignore[override]
            return Plain()

    with ThreadPoolExecutor(1) as pool:
        recognition = AsrRunner(PlainEngine(), pool).open()
        recognition.feed(b"\x00" * 320)
        assert await recognition.partial() is None
        await recognition.finish()


def test_flow_silences_are_checked(tmp_path):
    from voicebot.dialog.flow import DEFAULT_FLOW, FlowError
    from voicebot.dialog.flowcheck import load_checked

    text = DEFAULT_FLOW.read_text()
    good = tmp_path / "good.toml"
    good.write_text(text.replace("[nodes.menu]\n", "[nodes.menu]\ncomplete_ms = 150\nmid_phrase_ms = 900\n", 1))
    menu = load_checked(good).nodes["menu"]
    assert (menu.complete_ms, menu.hangover_ms, menu.mid_phrase_ms) == (150, None, 900)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[nodes.menu]\n", "[nodes.menu]\ncomplete_ms = 600\nhangover_ms = 400\n"
                                "mid_phrase_ms = \"long\"\n", 1))
    with pytest.raises(FlowError) as err:
        load_checked(bad)
    message = str(err.value)
    assert "nodes.menu.mid_phrase_ms: must be a whole number of milliseconds" in message
    assert "bad.toml" in message


def test_flow_silences_in_the_wrong_order_are_a_problem(tmp_path):
    from voicebot.dialog.flow import DEFAULT_FLOW, FlowError
    from voicebot.dialog.flowcheck import load_checked

    bad = tmp_path / "order.toml"
    bad.write_text(DEFAULT_FLOW.read_text().replace("[nodes.menu]\n", "[nodes.menu]\ncomplete_ms = 600\n"
                                                    "hangover_ms = 400\n", 1))
    with pytest.raises(FlowError, match=r"nodes.menu.complete_ms: complete_ms \(600\) must not exceed"):
        load_checked(bad)


def test_prompts_start_at_their_first_voiced_sample():
    from voicebot.tts.prompts import without_lead_in

    audio = np.concatenate([np.zeros(80, np.int16), np.full(40, 3, np.int16), np.array([500, -800, 2], np.int16)])
    assert without_lead_in(audio).tolist() == [500, -800, 2]
    quiet = np.full(10, 5, np.int16)
    assert without_lead_in(quiet).size == 10  # nothing voiced: kept as it is


async def test_rendered_prompts_have_no_lead_in():
    from voicebot.tts.prompts import VOICED_LEVEL, PromptCache

    class Synth:
        name = "fake"

        def synthesize(self, text: str, voice: str):
            lead = np.zeros(441, np.int16)  # 20 ms at 22050 Hz
            tone = (np.sin(np.arange(2205) / 3) * 8000).astype(np.int16)
            return np.concatenate([lead, tone]), 22050

    cache = PromptCache(Synth())
    try:
        audio = await cache.get("en", "hello", 8000)
    finally:
        cache.close()
    assert abs(int(audio[0])) >= VOICED_LEVEL


@pytest.mark.parametrize(("values", "ok"), [
    ({}, True), ({"turn_complete_ms": 0}, True),
    ({"turn_complete_ms": 600}, False), ({"turn_mid_phrase_ms": 300}, False),
])
def test_settings_keep_the_silences_in_order(values, ok):
    from voicebot.config import Settings
    from voicebot.errors import ConfigError

    if ok:
        Settings(**values)
    else:
        with pytest.raises(ConfigError, match="turn_complete_ms"):
            Settings(**values)
