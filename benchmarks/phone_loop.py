"""The rejection model as pocketsphinx's own phone-loop search (`allphone`, context-
independent phones) against the engine's (an FSG of the 39 phones as one-phone
words): CPU per second of audio, and how well the margin (sentence score minus
loop score, per frame) tells requests from out-of-domain speech.

    .venv/bin/python benchmarks/phone_loop.py --manifest DEV/manifest.json   # ~2 min

DEV is a rendered dev set (scripts/make_heldout.py --phrases benchmarks/devset/en.toml
--out DEV --no-real), never the held-out set: this compares rejection models. AUC is
the chance that a request for a person or a routine request gets a higher margin
than an out-of-domain sentence (1.0: a threshold separates them all; 0.5: chance).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from sphinx_search_cost import pcm16k  # noqa: E402

from voicebot.asr import sphinx_engine as se  # noqa: E402
from voicebot.dialog.compile import vocabulary  # noqa: E402
from voicebot.dialog.flow import DEFAULT_FLOW, load_flow  # noqa: E402

REQUESTS = ("person_request", "routine")
OTHER = ("out_of_domain",)


def allphone(engine: se.SphinxEngine, pip: float) -> object:
    decoder = se._decoder(engine._live, bestpath=False, pip=pip)
    decoder.add_allphone_file("allphone", None)
    decoder.activate_search("allphone")
    return decoder


def auc(requests: list[float], other: list[float]) -> float:
    wins = [1.0 if r > o else 0.5 if r == o else 0.0 for r in requests for o in other]
    return float(np.mean(wins)) if wins else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--pips", default="1.0,1e-3", help="allphone phone insertion probabilities")
    args = parser.parse_args()
    engine = se.SphinxEngine(vocabulary(load_flow(DEFAULT_FLOW), "en"), pool_size=1)
    decoders = engine.acquire()
    assert decoders is not None
    loops = {"fsg loop (now)": decoders.loop}
    loops |= {f"allphone pip {p}": allphone(engine, float(p)) for p in args.pips.split(",")}
    clips = [c for c in json.loads(args.manifest.read_text())["clips"]
             if c["language"] == "en" and c["class"] in REQUESTS + OTHER]
    cpu = dict.fromkeys(loops, 0.0)
    margins: dict[str, list[tuple[str, float]]] = {name: [] for name in loops}
    seconds = 0.0
    for clip in clips:
        pcm = pcm16k(args.manifest.parent / clip["file"])
        seconds += len(pcm) / 2 / se.SAMPLE_RATE
        cmn = engine.estimate_cmn(pcm[: 2 * se.SAMPLE_RATE])
        sentence = decode(decoders.sentences, cmn, pcm)[0]
        for name, loop in loops.items():
            score, took = decode(loop, cmn, pcm)
            cpu[name] += took
            if sentence is not None and score is not None:
                margins[name].append((clip["class"], (sentence - score) / decoders.sentences.n_frames()))
    print(f"{len(clips)} clips, {seconds:.0f} s of audio")
    print(f"{'loop':22} {'CPU ms/s':>8} {'AUC':>6} {'median margin requests / other':>32}")
    for name in loops:
        req = [m for c, m in margins[name] if c in REQUESTS]
        other = [m for c, m in margins[name] if c in OTHER]
        print(f"{name:22} {cpu[name] / seconds * 1000:8.1f} {auc(req, other):6.3f} "
              f"{np.median(req):>15.2f} / {np.median(other):.2f}")
    return 0


def decode(decoder: object, cmn: str, pcm: bytes) -> tuple[float | None, float]:
    """The search's best score over the whole clip, and its CPU seconds."""
    decoder.set_cmn(cmn)  # type: ignore[attr-defined]
    decoder.start_utt()  # type: ignore[attr-defined]
    began = time.process_time()
    decoder.process_raw(pcm, False, False)  # type: ignore[attr-defined]
    took = time.process_time() - began
    decoder.end_utt()  # type: ignore[attr-defined]
    scored = se._score(decoder)  # type: ignore[arg-type]
    return (scored[1] if scored else None), took


if __name__ == "__main__":
    sys.exit(main())
