"""How the grammar recogniser's confidence depends on the silence around speech.

pocketsphinx's confidence here is the per-frame score margin of the grammar's
sentence over the free phone loop. Frames of line noise favour the sentence
path (its silence model fits them; the loop must spend phones on them), so
over every frame the same words read surer the more silence followed them.
Since session 32 the margin is taken over a window (voicebot/asr/
sphinx_margin.py): the speech, 0.3 s before it and 0.5 s after it, as a
server's turn has them with the default pre-roll and hangover. This prints,
per class, the median confidence of the grammar's reading of each clip with
its trailing silence cut to 0 s or stretched to 0.2, 0.5, 1 and 2 s (the
clip's own line noise, repeated), and how many readings with words stand at
or over the accept threshold (0.6) at each length: from 0.5 s on they should
not move.

    .venv/bin/python benchmarks/silence_confidence.py --manifest dev/manifest.json --limit 10

For dev sets: it reads each clip's words.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decisions import policy_at_menu, with_tail  # noqa: E402
from understanding import CLASSES, Clips  # noqa: E402

from voicebot.asr.loader import load_engine  # noqa: E402
from voicebot.asr.sphinx_engine import THRESHOLD  # noqa: E402
from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.dialog.compile import vocabulary  # noqa: E402
from voicebot.dialog.flow import DEFAULT_FLOW  # noqa: E402
from voicebot.dialog.flowcheck import load_checked  # noqa: E402

TAILS_S = (0.0, 0.2, 0.5, 1.0, 2.0)
MEASURED = tuple(c for c in CLASSES if c != "noise")


def sure(readings: list[tuple[str, float]]) -> int:
    """Readings with words at or over the accept threshold."""
    return sum(1 for words, confidence in readings if words and confidence >= THRESHOLD)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=10, help="clips per class")
    args = ap.parse_args(argv)
    flow = load_checked(DEFAULT_FLOW)
    engine = load_engine(None, vocabulary(flow, "en"))
    context = policy_at_menu(flow, "en").listen_context
    clips = Clips(args.manifest).all
    print(f"{'class':24} {'n':>3}" + "".join(f" {f'{t:.1f} s':>14}" for t in TAILS_S))
    for cls in MEASURED:
        mine = [c for c in clips if c["class"] == cls and c["language"] == "en"][: args.limit]
        found: dict[float, list[tuple[str, float]]] = {t: [] for t in TAILS_S}
        for clip in mine:
            samples, rate = read_wav(args.manifest.parent / clip["file"], engine.sample_rate)
            for tail in TAILS_S:
                stream = engine.stream(context)
                stream.accept(with_tail(samples, rate, tail).tobytes())
                heard = stream.finish()
                found[tail].append((heard.text, heard.confidence))
        cells = [f"{statistics.median(c for _, c in found[t]):.2f} ({sure(found[t]):>2} sure)" for t in TAILS_S]
        print(f"{cls:24} {len(mine):>3}" + "".join(f" {cell:>14}" for cell in cells))
    print(f"\nmedian confidence of the grammar's reading (sure: words at or over {THRESHOLD}), "
          "by the silence after the speech")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
