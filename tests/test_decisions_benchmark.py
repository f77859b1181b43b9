"""benchmarks/decisions.py: the offline conversation matches understanding.py's
caller (confirmation answered, a second out-of-domain clip after a reprompt),
on a scripted recogniser; one real run with pocketsphinx on a few clips; the table by voice."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from voicebot.asr.fake import FakeEngine
from voicebot.types import Transcript

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import decisions  # noqa: E402
from understanding import Clips, by_voice, score  # noqa: E402
from understanding_caller import Outcome, Turn  # noqa: E402

SAID = {"person.wav": ("could somebody help me out", 0.5), "yes.wav": ("yes please", 0.9),
        "no.wav": ("no", 0.9), "ood1.wav": ("", 0.05), "ood2.wav": ("", 0.04),
        "routine.wav": ("i forgot my password", 0.95)}


def manifest(tmp_path: Path) -> Path:
    """One clip per file name above; each clip's audio holds its index, for the fake engine."""
    clips = []
    for i, (name, cls) in enumerate([("person.wav", "person_request"), ("yes.wav", "yes"), ("no.wav", "no"),
                                     ("ood1.wav", "out_of_domain"), ("ood2.wav", "out_of_domain"),
                                     ("routine.wav", "routine")]):
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(np.full(1600, i + 1, np.int16).tobytes())
        clips.append({"file": name, "class": cls, "language": "en", "family": "test", "text": name,
                      "intent": "password_reset" if cls == "routine" else None})
    (tmp_path / "manifest.json").write_text(json.dumps({"clips": clips}))
    return tmp_path / "manifest.json"


def scripted(audio: bytes) -> Transcript:
    name = list(SAID)[int(np.frombuffer(audio[:2], np.int16)[0]) - 1]
    return Transcript(*SAID[name])


def test_the_offline_conversation_is_the_benchmark_callers(tmp_path: Path) -> None:
    clips = Clips(manifest(tmp_path))
    decider = decisions.Decider.__new__(decisions.Decider)  # the engines replaced by a script
    decider.language, decider.second, decider.cache, decider.whisper = "en", False, {}, None
    decider.flow = decisions.load_checked(decisions.DEFAULT_FLOW)
    decider.engine = FakeEngine(scripted)
    by_file = {c["file"]: c for c in clips.all}

    person, log = decider.decide(clips, by_file["person.wav"], "x")
    assert [(t.said, t.reply) for t in person.turns] == [
        ("person.wav", "prompt:confirm_human"), ("yes.wav", "handoff:caller_request")]
    assert score(person)["conf"] and [h.grammar for h in log] == ["could somebody help me out", "yes please"]

    other, _ = decider.decide(clips, by_file["ood1.wav"], "x")
    assert [(t.said, t.reply) for t in other.turns] == [
        ("ood1.wav", "prompt:didnt_catch"), ("ood2.wav", "handoff:low_confidence")]
    assert score(other)["rep_low"]

    routine, _ = decider.decide(clips, by_file["routine.wav"], "x")
    assert routine.answers == ["password_reset"] and score(routine)["answered"]


def test_a_real_run_on_the_grammar(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "decisions.py"), "--limit", "2", "--second", "off",
         "--classes", "person_request,routine", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [(r["class"], r["n"]) for r in result["rows"]] == [("person_request", 2), ("routine", 2)]
    for call in result["calls"]:  # the real recogniser heard each clip and the policy answered it
        assert call["turns"][0]["reply"].split(":")[0] in ("prompt", "handoff"), call
        assert len(call["heard"]) == len(call["turns"])


def test_misses_are_the_calls_failing_their_class_headline() -> None:
    def right(**kw: bool) -> dict[str, bool]:
        return {"first": False, "conf": False, "false_cr": False, "answered": False, "rep_low": False, **kw}

    assert not decisions.missed("person_request", right(conf=True))
    assert decisions.missed("person_request", right())
    assert decisions.missed("routine", right(first=True))  # the right prompt, not answered in the end
    assert not decisions.missed("routine", right(answered=True))
    assert decisions.missed("out_of_domain", right(first=True))  # reprompted, never handed over
    assert not decisions.missed("out_of_domain", right(first=True, rep_low=True))
    assert decisions.missed("person_word_no_request", right(first=True, false_cr=True))


def test_the_table_by_voice_gives_each_family_its_headlines() -> None:
    def call(family: str, cls: str, replies: list[str], handoff: str | None = None) -> Outcome:
        o = Outcome("f.wav", "x", "en", cls, "order_status" if cls == "routine" else None,
                    [Turn("f.wav", r) for r in replies], handoff, family=family)
        o.answers = ["order_status"] if replies == ["prompt:order_status"] else []
        return o

    calls = [call("flite", "person_request", ["handoff:caller_request"], "caller_request"),
             call("flite", "person_request", ["prompt:confirm_human", "handoff:caller_request"], "caller_request"),
             call("espeak-ng", "person_request", ["prompt:didnt_catch"]),
             call("espeak-ng", "routine", ["prompt:order_status"]),
             call("espeak-ng", "out_of_domain", ["prompt:didnt_catch", "handoff:caller_request"], "caller_request")]
    text, rows = by_voice(calls, ["x"])
    espeak, flite = rows
    assert (espeak["family"], espeak["reached"], espeak["answered"], espeak["rep>low"], espeak["falseCR"]) \
        == ("espeak-ng", [0, 1], [1, 1], [0, 1], [1, 2])
    assert (flite["reached"], flite["answered"], flite["falseCR"]) == ([2, 2], [0, 0], [0, 0])
    assert "0/1" in text.splitlines()[2] and text.splitlines()[3].split()[3] == "2/2"
