"""The held-out evaluation set stays held out, and its manifest stays whole.

`evaluation/` (issue 12) measures understanding on phrasings the bot was not
built from. These tests fail when any evaluation phrase also appears in what the
bot is built from: every flow file under `voicebot/flows/` (every string value,
at any depth) and the language packs' `grammar` and `triggers`. A flow string is
also read as a phrase template (`voicebot/phrases.py`: `[optional]`,
`(one | other)`): an evaluation phrase that is one of its expansions is a copy
too, when the template has no `*` (any speech): such a template only lists
sentences. A template with `*` spots words inside free speech, so an evaluation
phrase it matches is covered by generalisation, not copied (a copy disguised as
"* whole sentence *" is not caught: that would be deliberate). Yes/no
answers are left out: they are how the benchmark's caller answers a
confirmation, not something measured, and every flow lists "yes" and "no".
"""

from __future__ import annotations

import json
import re
import tomllib
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .conftest import make_heldout_script

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "evaluation"
FLOWS = ROOT / "voicebot" / "flows"
DEVSET = ROOT / "benchmarks" / "devset"  # phrasings to tune on: never the held-out ones
MEASURED = ("person_request", "routine", "person_word_no_request", "out_of_domain")
# (language, class) -> (least clips, least distinct phrasings); issue 12, section 5
MINIMUMS = {
    ("en", "person_request"): (60, 30), ("en", "routine"): (40, 20),
    ("en", "person_word_no_request"): (30, 30), ("en", "out_of_domain"): (40, 30),
    ("en", "noise"): (2, 1), ("en", "yes"): (3, 2), ("en", "no"): (3, 2),
    ("ko", "person_request"): (20, 10), ("ko", "routine"): (16, 8),
    ("ko", "person_word_no_request"): (10, 8), ("ko", "out_of_domain"): (10, 8),
    ("ko", "noise"): (2, 1), ("ko", "yes"): (3, 2), ("ko", "no"): (3, 2),
}
MAX_AUDIO_BYTES = 30 * 1024 * 1024


def normalise(text: str) -> str:
    text = re.sub(r"[^\w\s]", "", text.lower().replace("-", " "))
    return " ".join(text.split())


def strings_in(value: Any) -> list[str]:
    """Every string value in a parsed flow, at any depth (keys are names, not phrasings)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


def load_flow(path: Path) -> Any:
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        import yaml
    except ImportError:  # a YAML flow we cannot read would let a copy through unseen
        pytest.fail(f"{path} is YAML but PyYAML is not installed, so the split cannot be checked")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def flow_strings(flow_dir: Path = FLOWS) -> dict[str, str]:
    """Every flow string as written -> where it comes from."""
    found: dict[str, str] = {}
    files = sorted(p for ext in ("*.toml", "*.yaml", "*.yml") for p in flow_dir.rglob(ext)) \
        if flow_dir.is_dir() else []
    for path in files:
        for s in strings_in(load_flow(path)):
            found.setdefault(s, str(path.relative_to(flow_dir.parent.parent)))
    for s, where in lang_pack_strings():
        found.setdefault(s, where)
    return found


def template_regex(template: str) -> re.Pattern[str] | None:
    """A regex over normalised words (each followed by a space) for every
    expansion of `template`; None when it is not a template we can read."""
    try:
        from voicebot import phrases
        node = phrases.parse(template)
    except (ImportError, ValueError, IndexError):
        return None
    if "*" in template:
        return None  # spots words in free speech: generalises (module docstring)

    def rx(n: Any) -> str:
        kind = type(n).__name__
        if kind == "Word":
            word = normalise(n.text)
            return re.escape(word) + " " if word else ""
        if kind == "Seq":
            return "".join(rx(i) for i in n.items)
        if kind == "Alt":
            return "(?:" + "|".join(rx(o) for o in n.options) + ")"
        if kind == "Opt":
            return "(?:" + rx(n.inner) + ")?"
        return ""

    return re.compile(rx(node))


def lang_pack_strings() -> list[tuple[str, str]]:
    """The language packs' grammar and trigger phrases, while they exist."""
    try:
        from voicebot.dialog import lang
    except ImportError:
        return []
    out = []
    for name in dir(lang):
        pack = getattr(lang, name)
        for attr in ("grammar", "triggers"):
            value = getattr(pack, attr, None)
            if value is not None and not callable(value) and not isinstance(pack, type):
                out += [(s, f"voicebot/dialog/lang.py {name}.{attr}") for s in strings_in(value)]
    return out


def manifest() -> list[dict[str, Any]]:
    return json.loads((EVAL / "manifest.json").read_text(encoding="utf-8"))["clips"]


def eval_phrases(clips: list[dict[str, Any]]) -> dict[str, str]:
    """Normalised evaluation phrase -> a clip that speaks it (measured classes only)."""
    return {normalise(c["text"]): c["file"] for c in clips if c["class"] in MEASURED and c["text"]}


def split_violations(phrases: dict[str, str], flow: dict[str, str]) -> list[str]:
    """Evaluation phrases that equal a flow string or one of its template
    expansions (which also catches a flow example sentence of 3+ words that
    equals an evaluation phrase)."""
    plain = {normalise(s): where for s, where in flow.items()}
    patterns = [(rx, s, where) for s, where in flow.items() if (rx := template_regex(s)) is not None]
    problems = []
    for phrase in sorted(p for p in phrases if p):
        if phrase in plain:
            problems.append(f"{phrase!r} ({phrases[phrase]}) is also in {plain[phrase]}")
            continue
        for rx, template, where in patterns:
            if rx.pattern and rx.fullmatch(phrase + " "):
                problems.append(f"{phrase!r} ({phrases[phrase]}) is an expansion of {template!r} in {where}")
                break
    return problems


def test_no_evaluation_phrase_is_in_a_flow_or_the_language_packs() -> None:
    problems = split_violations(eval_phrases(manifest()), flow_strings())
    assert not problems, "the held-out set is no longer held out:\n" + "\n".join(problems)


def dev_phrases(dev_dir: Path = DEVSET) -> dict[str, str]:
    """Normalised dev-set phrase -> its file (measured classes; a routine class holds
    a list per intent)."""
    found: dict[str, str] = {}
    for path in sorted(dev_dir.glob("*.toml")):
        for cls, body in tomllib.loads(path.read_text(encoding="utf-8")).items():
            if cls in MEASURED and isinstance(body, dict):
                for text in strings_in(body):
                    found.setdefault(normalise(text), path.name)
    return found


def test_no_dev_phrase_is_a_held_out_phrase(tmp_path: Path) -> None:
    """What rules are chosen on must not be what measures them."""
    held_out, dev = eval_phrases(manifest()), dev_phrases()
    assert len(dev) >= 60
    shared = sorted(set(dev) & set(held_out))  # named alone: the failure must not print the held-out set
    assert not shared, f"the dev set speaks held-out phrases: {shared}"
    planted = next(c["text"] for c in manifest() if c["class"] == "out_of_domain")
    (tmp_path / "en.toml").write_text(f'[out_of_domain]\nphrases = ["{planted.upper()}!"]\n', encoding="utf-8")
    assert set(dev_phrases(tmp_path)) & set(held_out) == {normalise(planted)}


def test_the_checker_catches_a_phrase_planted_in_a_flow(tmp_path: Path) -> None:
    clips = manifest()
    planted = next(c for c in clips if c["class"] == "person_request" and c["language"] == "en")
    korean = next(c for c in clips if c["class"] == "routine" and c["language"] == "ko")
    flows = tmp_path / "voicebot" / "flows"
    flows.mkdir(parents=True)
    (flows / "clean.toml").write_text('[intents.human]\nexamples = ["a sentence nobody evaluates"]\n')
    (flows / "sub").mkdir()
    # the copy differs in case and punctuation, and sits deep in the structure
    (flows / "sub" / "copied.toml").write_text(
        "[[nodes]]\nid = 'ask'\n[nodes.intents.human]\n"
        f"examples = [\"OK\", {json.dumps(planted['text'].upper() + '!')}]\n"
        f"[languages.ko]\nphrases = [{json.dumps(korean['text'] + '.')}]\n", encoding="utf-8")
    problems = split_violations(eval_phrases(clips), flow_strings(flows))
    assert [p for p in problems if repr(normalise(planted["text"])) in p and "copied.toml" in p]
    assert [p for p in problems if repr(normalise(korean["text"])) in p]
    assert not [p for p in problems if "clean.toml" in p]


def test_the_checker_catches_a_phrase_a_template_expands_to(tmp_path: Path) -> None:
    clips = manifest()
    planted = next(c for c in clips if c["class"] == "routine" and c["language"] == "en")
    words = normalise(planted["text"]).split()
    template = f"(zzz | {words[0]}) {' '.join(words[1:-1])} [{words[-1]}] [please]"
    generalises = f"* {' '.join(words[1:])} *"  # spots words in free speech: not a copy
    flows = tmp_path / "voicebot" / "flows"
    flows.mkdir(parents=True)
    (flows / "t.toml").write_text(f"[intents.x]\nexamples = [{json.dumps(template)}, {json.dumps(generalises)}]\n")
    problems = split_violations(eval_phrases(clips), flow_strings(flows))
    assert [p for p in problems if repr(normalise(planted["text"])) in p and "expansion" in p], problems
    assert not [p for p in problems if repr(generalises) in p]


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("  Uh, can YOU put me   through?! ") == "uh can you put me through"
    assert normalise("상담원 연결해 주세요.") == "상담원 연결해 주세요"
    assert normalise("I'd like a rep") != normalise("I like a rep")


def test_manifest_files_exist_and_are_8khz_mono_16bit() -> None:
    clips = manifest()
    listed = {c["file"] for c in clips}
    assert len(listed) == len(clips), "a file is listed twice"
    on_disk = {p.relative_to(EVAL).as_posix() for p in (EVAL / "audio").rglob("*.wav")}
    assert listed == on_disk, f"missing: {sorted(listed - on_disk)[:5]}, unlisted: {sorted(on_disk - listed)[:5]}"
    for c in clips:
        with wave.open(str(EVAL / c["file"])) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), c["file"]
            assert w.getnframes() > 0, c["file"]
        assert c["language"] in ("en", "ko") and c["source"] and c["licence"], c["file"]
        assert (c["intent"] in ("order_status", "password_reset")) == (c["class"] == "routine"), c["file"]
    assert sum((EVAL / f).stat().st_size for f in listed) < MAX_AUDIO_BYTES


def test_class_counts_meet_the_issue_minimums() -> None:
    clips = manifest()
    counts = Counter((c["language"], c["class"]) for c in clips)
    texts = Counter((c["language"], c["class"], normalise(c["text"])) for c in clips)
    phrasings = Counter((lang, cls) for lang, cls, _ in texts)
    short = [f"{key}: {counts[key]} clips / {phrasings[key]} phrasings, need {need}"
             for key, need in MINIMUMS.items() if counts[key] < need[0] or phrasings[key] < need[1]]
    assert not short, "\n".join(short)
    routine = Counter(c["intent"] for c in clips if c["class"] == "routine" and c["language"] == "en")
    assert min(routine["order_status"], routine["password_reset"]) >= 20


def test_english_has_three_synthesizer_families_and_real_recordings() -> None:
    families = {c["family"] for c in manifest() if c["language"] == "en" and c["class"] in MEASURED}
    assert {"espeak-ng", "flite", "festival"} <= families
    assert "human" in families, "no real recordings in the English set"


def real_jobs(listed: Path) -> list[Any]:
    """The recordings a real-sources file lists, read as scripts/make_heldout.py reads them."""
    return list(make_heldout_script().real_jobs(listed))


def test_the_dev_recordings_are_not_the_held_out_or_fixture_ones() -> None:
    """Real recordings rules are chosen on (benchmarks/devset/real.toml) are others than the
    held-out set's and the fixtures' (their speaker may be the same: she is all there is)."""
    dev_jobs = real_jobs(ROOT / "benchmarks/devset/real.toml")
    dev, held_out = {str(j.source) for j in dev_jobs}, {str(j.source) for j in real_jobs(EVAL / "real_sources.toml")}
    assert len(dev) >= 25 and len(held_out) >= 25
    assert not dev & held_out
    fixtures = (ROOT / "audio_fixtures" / "manifest.json").read_text(encoding="utf-8")
    assert "tt-weasels" in fixtures  # the fixtures name their Asterisk sources this way
    assert not [f for f in dev if f"{Path(f).stem}" in re.findall(r"[\w/-]+", fixtures)]
    assert not {normalise(j.text) for j in dev_jobs} & set(eval_phrases(manifest()))


def test_every_english_phrase_is_also_spoken_by_the_neural_voice() -> None:
    clips = [c for c in manifest() if c["language"] == "en" and c["class"] in (*MEASURED, "yes", "no")]
    synthetic = {(c["class"], normalise(c["text"])) for c in clips
                 if c["family"] in ("espeak-ng", "flite", "festival") and "_foreign_" not in c["file"]}
    neural = {(c["class"], normalise(c["text"])) for c in clips if c["family"] == "piper"}
    assert synthetic and neural == synthetic
