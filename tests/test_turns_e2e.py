"""Adaptive end of turn in real calls: real server, real gateway client, real
audio and the real English engine. A short whole request ends the turn after
the short silence; a sentence with a pause in the middle is heard whole."""

from __future__ import annotations

import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay

from .conftest import TURNS
from .conftest import turn_entry as entry

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


async def heard(server, name: str) -> list[dict]:
    """The utterances the bot heard in one call of fixture `name` (its transcript events)."""
    samples, rate = read_wav(TURNS / name)
    result = await replay(server.ws + "/v1/stream", samples, rate,
                          ReplayOptions(hangup_at=samples.size / rate + 0.5, max_call_s=30))
    return result.of("transcript")


async def test_a_whole_short_request_ends_the_turn_early_and_a_paused_sentence_is_not_cut(
        start_server, en_engine):
    # A long hangover leaves the partial decode room on a loaded test machine: what
    # is checked is that the whole phrase ended the turn, not the silence (how soon
    # after the speech depends on how fast the decode comes back: benchmarks/capacity.py)
    patient = await start_server(en_engine, vad_hangover_ms=1500, turn_mid_phrase_ms=1500)
    operator = await heard(patient, "short_operator.wav")
    assert [u["text"] for u in operator] == ["operator"]
    assert operator[0]["early"] is True
    assert operator[0]["end"] - entry("short_operator.wav")["speech"][0][1] < 1.5

    server = await start_server(en_engine)  # defaults: hangover 500 ms, whole phrase 200 ms
    paused = await heard(server, "mid_speak_person.wav")  # 600 ms of silence after "i want to speak"
    speech = entry("mid_speak_person.wav")["speech"]
    assert [u["text"] for u in paused] == ["i want to speak to a person"]
    assert paused[0]["start"] < speech[0][0] and paused[0]["end"] > speech[1][1]


async def test_with_a_fixed_hangover_the_same_pause_cuts_the_sentence(start_server, en_engine):
    # nor joined again: a slow decode (a loaded test machine) would otherwise hear it whole
    server = await start_server(en_engine, turn_complete_ms=0, turn_join_ms=0)
    paused = await heard(server, "mid_speak_person.wav")
    assert len(paused) == 2  # what adaptive end of turn avoids: the caller cut in two
    operator = await heard(server, "short_operator.wav")
    assert operator[0]["early"] is False
    assert operator[0]["end"] - entry("short_operator.wav")["speech"][0][1] > 0.45
