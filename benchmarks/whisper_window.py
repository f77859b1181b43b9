"""Whisper's 30 s window against a window sized to the utterance, side by side.

Each English clip of the held-out evaluation set (`evaluation/`: espeak-ng,
flite, festival and real recordings through a telephone chain; never used to
choose the window or the search) is transcribed by Whisper tiny.en, prompted
as the second opinion prompts it at the open question, in two ways:

  30s-beam5   faster-whisper's own path: the clip padded to 30 s, beam search
              of 5, word timestamps (the engine before this change)
  window-greedy  the clip's own length + 1 s, at least 10 s, greedy search
              (`voicebot/transcript/whisper_window.py`; the second opinion)
  window-beam5   the same window, beam search of 5 (the staff's transcripts)

and prints per class how often the text matcher finds the right meaning in
the words (a request for a person, the routine intent, or for the other
classes: no request for a person), the word error rate against what was said,
and the seconds per clip (p50 / p95 / max, one process, 2 threads).

    .venv/bin/python benchmarks/whisper_window.py
    .venv/bin/python benchmarks/whisper_window.py --limit 60 --threads 1

`--windows 10,5` compares instead the greedy search in windows of at least
each of those seconds (the second opinion's `min_window_s`); `--check PHRASE`
the greedy search alone against the same with PHRASE's fit to the audio
scored beside it (as the second opinion checks the grammar's words:
`whisper_window.fits`), for its cost; `--model` picks
the model (whisper-base, the fallback) and `--manifest` another set of clips
(a dev set, to choose on before the held-out set measures).

Needs `pip install 'voicebot[whisper]'` and the whisper-tiny.en weights
(`scripts/setup --test` installs both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.dialog.flow import load_flow  # noqa: E402
from voicebot.dialog.lang import PACKS  # noqa: E402
from voicebot.dialog.understand import HUMAN, interpret  # noqa: E402
from voicebot.replay.suite import word_error_rate  # noqa: E402
from voicebot.transcript.catalog import resolve_whisper  # noqa: E402
from voicebot.transcript.engines import WhisperEngine  # noqa: E402

EVALUATION = ROOT / "evaluation"
CLASSES = ("person_request", "routine", "person_word_no_request", "out_of_domain", "noise")


def arms(threads: int, model: str, windows: list[float]) -> dict[str, WhisperEngine]:
    path = resolve_whisper(model, ROOT / "models")
    if windows:
        return {f"greedy-{w:g}s": WhisperEngine(path, model, "en", threads, beam_size=1, min_window_s=w)
                for w in windows}
    return {
        "30s-beam5": WhisperEngine(path, model, "en", threads, beam_size=5,
                                   min_window_s=31.0),  # no window fits: faster-whisper's path
        "window-greedy": WhisperEngine(path, model, "en", threads, beam_size=1),
        "window-beam5": WhisperEngine(path, model, "en", threads, beam_size=5),
    }


def right(clip: dict, intent: str | None) -> bool:
    if clip["class"] == "person_request":
        return intent == HUMAN
    if clip["class"] == "routine":
        return intent == clip["intent"]
    return intent != HUMAN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="clips at most (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--windows", default="", help="compare greedy windows of at least these seconds, "
                        "e.g. 10,6,5")
    parser.add_argument("--manifest", type=Path, default=EVALUATION / "manifest.json")
    parser.add_argument("--check", default="", help="compare the greedy search without and with "
                        "this phrase's fit scored, e.g. 'i want to talk to a live person'")
    args = parser.parse_args(argv)

    flow = load_flow(ROOT / "voicebot" / "flows" / "default.toml")
    intents = [flow.intents[name] for name in flow.nodes["menu"].on if name in flow.intents]
    pack = PACKS["en"]
    prompt = pack.opinion_prompt([k for i in intents for k in i.keywords.get("en", ())])
    clips = [c for c in json.loads(args.manifest.read_text())["clips"]
             if c["language"] == "en" and c["class"] in CLASSES]
    clips = clips[: args.limit] if args.limit else clips
    engines = arms(args.threads, args.model, [float(w) for w in args.windows.split(",") if w.strip()])
    checks = {name: "" for name in engines}
    if args.check:
        greedy = engines["window-greedy"]
        engines, checks = {"greedy": greedy, "greedy+check": greedy}, {"greedy": "", "greedy+check": args.check}
    hits: dict[tuple[str, str], int] = defaultdict(int)
    errors: dict[str, float] = defaultdict(float)
    seconds: dict[str, list[float]] = defaultdict(list)
    for clip in clips:
        samples, _ = read_wav(args.manifest.parent / clip["file"], 16000)
        for name, engine in engines.items():
            began = time.perf_counter()
            heard = engine.transcribe_many([samples.tobytes()], prompt, [checks[name]])[0]
            seconds[name].append(time.perf_counter() - began)
            hits[name, clip["class"]] += right(clip, interpret(heard.text, pack, intents).intent)
            if clip["class"] != "noise":
                errors[name] += word_error_rate(clip["text"], heard.text) * len(clip["text"].split())
    counts = {c: sum(1 for clip in clips if clip["class"] == c) for c in CLASSES}
    words = sum(len(c["text"].split()) for c in clips if c["class"] != "noise")
    names = list(engines)
    print(f"{len(clips)} English clips of {args.manifest}, Whisper {args.model}, {args.threads} threads")
    print(f"{'meaning right':28}" + "".join(f"{n:>14}" for n in names))
    for c in CLASSES:
        print(f"  {c:26}" + "".join(f"{hits[n, c]:>8}/{counts[c]:<5}" for n in names))
    print(f"{f'word errors (of {words})':28}" + "".join(f"{errors[n]:>14.0f}" for n in names))
    for label, q in (("seconds per clip p50", 50), ("seconds per clip p95", 95), ("seconds per clip max", 100)):
        print(f"{label:28}" + "".join(f"{np.percentile(seconds[n], q):>14.3f}" for n in names))
    base = float(np.percentile(seconds[names[0]], 50))
    print(f"{'p50 ratio first/this':28}" + "".join(
        f"{base / float(np.percentile(seconds[n], 50)):>13.1f}x" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
