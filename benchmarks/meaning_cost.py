"""What the sentence encoder costs: its start-up, memory, and time per ask.

    .venv/bin/python benchmarks/meaning_cost.py

Loads the encoder (minilm-l6, unpacked into ./models on first use), encodes
the default flow's example sets as the server does at start-up, then times
`Meaning.closeness` on caller-length sentences (what each second-opinion ask
adds, in the opinion's thread) beside the text matcher alone on the same
sentences. One thread (OMP_NUM_THREADS=1 unless set), as on a busy server.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicebot.dialog.flow import DEFAULT_FLOW  # noqa: E402
from voicebot.dialog.flowcheck import load_checked  # noqa: E402
from voicebot.dialog.lang import PACKS  # noqa: E402
from voicebot.dialog.question import flow_topics  # noqa: E402
from voicebot.dialog.understand import interpret  # noqa: E402
from voicebot.transcript.catalog import resolve_encoder  # noqa: E402
from voicebot.transcript.meaning import Meaning  # noqa: E402
from voicebot.transcript.sentences import SentenceEncoder  # noqa: E402

SENTENCES = ["I'd like to order a birthday cake.", "Do you guys deliver on weekends?",
             "Where is my package right now?", "I can't get into my account, it says my password is wrong.",
             "Could you put me through to someone who can actually help me with this?"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def now_mb() -> float:
    """Resident now (the peak also counts the weights file, mapped while it loads)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main() -> int:
    before, resident = rss_mb(), now_mb()
    began = time.perf_counter()
    encoder = SentenceEncoder(resolve_encoder("minilm-l6", ROOT / "models"))
    loaded = time.perf_counter() - began
    flow = load_checked(DEFAULT_FLOW)
    topics = flow_topics(flow, "en")
    meaning = Meaning(encoder)
    began = time.perf_counter()
    meaning.prepare(topics)
    prepared = time.perf_counter() - began
    sets = {examples for t in topics for _, examples in t}
    print(f"load {loaded * 1000:.0f} ms; {len(sets)} example sets, {sum(map(len, sets))} sentences "
          f"encoded in {prepared * 1000:.0f} ms; RSS +{now_mb() - resident:.0f} MB after, "
          f"+{rss_mb() - before:.0f} MB at the peak")
    intents = list(flow.intents.values())
    rows = []
    for label, run in (("text matcher", lambda s: interpret(s, PACKS["en"], intents)),
                       ("closeness", lambda s: meaning.closeness(s, topics[0]))):
        times = []
        for _ in range(20):
            for sentence in SENTENCES:
                t = time.perf_counter()
                run(sentence)
                times.append((time.perf_counter() - t) * 1000)
        rows.append((label, statistics.median(times), sorted(times)[int(0.95 * len(times))]))
    print(f"{'per sentence':14} {'p50 ms':>8} {'p95 ms':>8}")
    for label, p50, p95 in rows:
        print(f"{label:14} {p50:8.2f} {p95:8.2f}")
    print(f"closeness / text matcher at p50: {rows[1][1] / rows[0][1]:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
