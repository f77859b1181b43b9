"""The rejection model as pocketsphinx's own phone-loop search (`allphone`, context-
independent phones) against the engine's (an FSG of the 39 phones as one-phone
words): CPU per second of audio, and how well the margin (sentence score minus
loop score, per frame) tells requests from out-of-domain speech.

    .venv/bin/python benchmarks/phone_loop.py --manifest DEV/manifest.json   # ~2 min
    .venv/bin/python benchmarks/phone_loop.py --manifest DEV/manifest.json --union
    .venv/bin/python benchmarks/phone_loop.py --manifest DEV/manifest.json --pips "" --fsg ds1,topn2,ds2+topn2

--union also decodes each clip with one search holding both the sentences and
the engine's phone loop (the acoustic scores computed once, not once per
search): its CPU beside the two searches', how often its best path is a
sentence, and the size of its lattice (where both paths' scores would be read),
on the first clip.

DEV is a rendered dev set (scripts/make_heldout.py --phrases benchmarks/devset/en.toml
--out DEV --no-real), never the held-out set: this compares rejection models. AUC is
the chance that a request for a person or a routine request gets a higher margin
than an out-of-domain sentence (1.0: a threshold separates them all; 0.5: chance).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from sphinx_search_cost import pcm16k  # noqa: E402

from voicebot.asr import sphinx_engine as se  # noqa: E402
from voicebot.asr.sphinx_margin import LN_BASE  # noqa: E402
from voicebot.dialog.compile import vocabulary  # noqa: E402
from voicebot.dialog.flow import DEFAULT_FLOW, load_flow  # noqa: E402

REQUESTS = ("person_request", "routine")
OTHER = ("out_of_domain",)


def allphone(engine: se.SphinxEngine, pip: float) -> object:
    decoder = se._decoder(engine._live, bestpath=False, pip=pip)
    decoder.add_allphone_file("allphone", None)
    decoder.activate_search("allphone")
    return decoder


def fsg_loop(engine: se.SphinxEngine, variant: str) -> object:
    """The engine's phone loop with other decoder settings ("ds2+topn2": ds=2, topn=2)."""
    extra = {k: int(v) for k, v in (re.fullmatch(r"([a-z]+)(\d+)", part).groups()  # type: ignore[union-attr]
                                     for part in variant.split("+"))}
    return se.phone_loop(engine._live, **extra)


def auc(requests: list[float], other: list[float]) -> float:
    wins = [1.0 if r > o else 0.5 if r == o else 0.0 for r in requests for o in other]
    return float(np.mean(wins)) if wins else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--pips", default="1.0,1e-3", help="allphone phone insertion probabilities")
    parser.add_argument("--union", action="store_true", help="also one search holding sentences and loop")
    parser.add_argument("--fsg", default="ds1", help="the engine's loop with other settings, e.g. "
                        "ds1,topn2,ds2+topn2 (ds1: acoustic scores on every frame, as before session 28)")
    args = parser.parse_args()
    engine = se.SphinxEngine(vocabulary(load_flow(DEFAULT_FLOW), "en"), pool_size=1)
    decoders = engine.acquire()
    assert decoders is not None
    loops = {f"fsg loop (now, ds {se.LOOP_DS})": decoders.loop}
    loops |= {f"allphone pip {p}": allphone(engine, float(p)) for p in args.pips.split(",") if p}
    loops |= {f"fsg loop {v}": fsg_loop(engine, v) for v in args.fsg.split(",") if v}
    clips = [c for c in json.loads(args.manifest.read_text())["clips"]
             if c["language"] == "en" and c["class"] in REQUESTS + OTHER]
    cpu = dict.fromkeys(loops, 0.0)
    sentence_cpu = 0.0
    together = union(engine) if args.union else None
    union_cpu, union_sentences, links = 0.0, 0, []
    margins: dict[str, list[tuple[str, float]]] = {name: [] for name in loops}
    seconds = 0.0
    for clip in clips:
        pcm = pcm16k(args.manifest.parent / clip["file"])
        seconds += len(pcm) / 2 / se.SAMPLE_RATE
        cmn = engine.estimate_cmn(pcm[: 2 * se.SAMPLE_RATE])
        sentence, took = decode(decoders.sentences, cmn, pcm)
        sentence_cpu += took
        if together is not None:
            _, took = decode(together, cmn, pcm)
            union_cpu += took
            hyp = together.hyp()  # type: ignore[attr-defined]
            union_sentences += hyp is not None and "phone_" not in hyp.hypstr
            if not links:  # one lattice: writing one out takes longer than the decoding
                links.append(lattice_links(together) / (len(pcm) / 2 / se.SAMPLE_RATE))
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
    if together is not None:
        two = (sentence_cpu + cpu[next(iter(loops))]) / seconds * 1000
        print(f"sentence search + fsg loop: {two:.1f} CPU ms/s; one search holding both: "
              f"{union_cpu / seconds * 1000:.1f} ({union_cpu / seconds * 1000 / two:.2f}x); its best path a "
              f"sentence in {union_sentences} of {len(clips)}; "
              f"lattice links per s of audio (first clip) {links[0]:.0f}")
    return 0


def union(engine: se.SphinxEngine) -> object:
    """One search: the default context's sentence graph and the phone loop side by side."""
    decoder = se._decoder(engine._live, bestpath=False, **se._WIDE_BEAMS)
    se.add_phone_words(decoder)
    edges, state = engine.sentence_edges(engine.default_context)
    loop, phone = state, state + 1  # the loop has its own start: no phones before a sentence
    edges += [(0, loop, 1.0), (phone, loop, 1.0), (phone, 1, 1.0)]
    edges += [(loop, phone, se.PHONE_LOOP_PROB, f"phone_{p.lower()}") for p in se._PHONES]
    decoder.add_fsg("union", decoder.create_fsg("union", 0, 1, edges))
    decoder.activate_search("union")
    return decoder


def lattice_links(decoder: object) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lattice.slf"
        decoder.get_lattice().write_htk(str(path))  # type: ignore[attr-defined]
        return sum(1 for line in path.read_text().splitlines() if line.startswith("J="))


def decode(decoder: object, cmn: str, pcm: bytes) -> tuple[float | None, float]:
    """The search's best score over the whole clip, and its CPU seconds."""
    decoder.set_cmn(cmn)  # type: ignore[attr-defined]
    decoder.start_utt()  # type: ignore[attr-defined]
    began = time.process_time()
    decoder.process_raw(pcm, False, False)  # type: ignore[attr-defined]
    took = time.process_time() - began
    decoder.end_utt()  # type: ignore[attr-defined]
    hyp = decoder.hyp()  # type: ignore[attr-defined]
    if hyp is None or hyp.best_score <= 0.0:
        return None, took
    return math.log(hyp.best_score) / LN_BASE, took


if __name__ == "__main__":
    sys.exit(main())
