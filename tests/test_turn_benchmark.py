"""benchmarks/turn_calls.py (capacity.py --turns): what it counts as the
response a caller hears, a false cut, and a clip's speech."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from capacity import parser  # noqa: E402
from turn_calls import RATE, by_kind, counted, first_audible, fixture_items, run_turns, speech_span  # noqa: E402

from voicebot.metrics import Metrics  # noqa: E402


def test_first_audible_is_the_first_loud_sample_playing_after_the_turn_began():
    quiet, loud = np.zeros(160, np.int16), np.full(160, 2000, np.int16)
    menu = (0.0, np.concatenate([quiet, loud]))  # plays before the caller starts at 1.0 s
    reply = (2.0, np.concatenate([quiet[:80], loud]))  # its lead-in: 80 samples = 10 ms
    assert first_audible([menu, reply], after=1.0) == pytest.approx(2.0 + 80 / RATE)
    assert first_audible([menu], after=1.0) is None
    # a reply that started while the caller still spoke counts from the turn's start
    assert first_audible([(0.5, np.concatenate([loud] * 100))], after=1.0) == pytest.approx(1.0, abs=1 / RATE)


def test_the_server_counts_it_reports_are_read_from_the_servers_own_metrics():
    metrics = Metrics()
    for result in ("asked", "asked", "answered", "busy"):
        metrics.second_opinion(result)
    metrics.fallback_opinion("asked")
    metrics.turns_joined.inc(3)
    metrics.answers_held.inc(4)
    for silence in (0.2, 0.24, 0.4, 0.5, 0.8):  # at pauses (the first, a late answer, a later one), not
        metrics.turn_end_silence.observe(silence)
    assert counted(metrics.exposition().decode()) == {"joined": 3, "held": 4, "whisper": 2, "fallback": 1,
                                                      "ends": 5, "at_pause": 3}
    assert counted(Metrics().exposition().decode()) == {"joined": 0, "held": 0, "whisper": 0, "fallback": 0,
                                                        "ends": 0, "at_pause": 0}


def test_rounds_repeat_each_pattern_in_turn_and_number_the_repeats():
    from turn_calls import rounds

    assert rounds(("arrivals", "burst"), 1) == [("arrivals", "arrivals"), ("burst", "burst")]
    assert [label for label, _ in rounds(("arrivals", "burst"), 3)] == [
        "arrivals", "burst", "arrivals2", "burst2", "arrivals3", "burst3"]
    assert [pattern for _, pattern in rounds(("arrivals", "burst"), 2)] == ["arrivals", "burst"] * 2


def test_speech_span_finds_the_loud_part():
    audio = np.zeros(RATE * 2, np.int16)
    audio[RATE // 2: RATE] = (np.sin(np.arange(RATE // 2) / 3) * 8000).astype(np.int16)
    start, end = speech_span(audio)
    assert start == pytest.approx(0.5, abs=0.02) and end == pytest.approx(1.0, abs=0.02)
    # line noise 25 dB under the speech: the speech still ends where it ends, not at the clip's end
    hiss = np.random.default_rng(1).standard_normal(audio.size) * 8000 / np.sqrt(2) / 10 ** (25 / 20)
    start, end = speech_span((audio + hiss).astype(np.int16))
    assert start == pytest.approx(0.5, abs=0.02) and end == pytest.approx(1.0, abs=0.02)


def test_turn_fixtures_keep_every_interval_of_the_turn():
    items = {i.name: i for i in fixture_items(ROOT / "audio_fixtures" / "turns", None, True)}
    paused = items["mid_speak_person.wav"]
    assert paused.kind == "mid" and paused.start == pytest.approx(0.2)
    assert paused.end - paused.start == pytest.approx(3.39 - 1.0, abs=0.01)  # both parts and the pause
    assert paused.audio.size / RATE == pytest.approx(paused.end + 0.2, abs=0.01)


def test_turn_rows_are_written_only_for_a_development_set(tmp_path):
    """--rows names every clip and its reply: the held-out set's stay unread."""
    args = parser().parse_args(["--turns", "--rows", str(tmp_path / "rows.jsonl")])
    with pytest.raises(SystemExit, match="development set"):
        asyncio.run(run_turns(args))
    assert not (tmp_path / "rows.jsonl").exists()


def test_held_out_turns_are_also_reported_by_voice_family():
    def median(values, _q):
        return float(np.median(values)) if values else float("nan")

    results = [
        {"name": "mid_a.wav", "kind": "mid", "family": "", "response": 0.2, "false_cut": False},
        {"name": "x", "kind": "routine", "family": "piper", "response": 0.3, "false_cut": False, "right": True},
        {"name": "y", "kind": "routine", "family": "piper", "response": 0.5, "false_cut": False, "right": False},
        {"name": "z", "kind": "routine", "family": "espeak-ng", "response": 0.9, "false_cut": False, "right": True},
    ]
    report = by_kind(results, median)
    assert "held out by voice: espeak-ng n=1 p50=900 right=1; piper n=2 p50=400 right=1" in report
    assert "by voice" not in by_kind(results[:1], median)
