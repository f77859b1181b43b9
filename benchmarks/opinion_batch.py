"""The second opinion under load: Whisper utterances one after another vs as one batch.

    .venv/bin/python benchmarks/opinion_batch.py                  # tiny.en, 2 threads
    .venv/bin/python benchmarks/opinion_batch.py --model whisper-base --sizes 1,2,4

Part 1, the engine: n short utterances (the English fixtures' utterances, as
the VAD passes them on) transcribed one after another vs as one batch
(`WhisperEngine.transcribe_many`), with the same prompt; prints the time of
each, their ratio, and whether every utterance got the same words.

Part 2, the service a caller waits for: n asks arriving at once at a
`SecondOpinion` (budget 60 s, so none is dropped; it has first learned
the engine's pace from ten asks), with the engine decoding
one at a time (`max_batch=1`, the previous behaviour) vs in batches; prints when the last
caller got their answer, p50 of all, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.transcript.engines import load_free_engine  # noqa: E402
from voicebot.transcript.opinion import SecondOpinion  # noqa: E402
from voicebot.transcript.worker import InlineTranscriber  # noqa: E402

FIXTURES = ROOT / "audio_fixtures"
PROMPT = "agent, person, representative, order, package, password"


def utterances() -> list[bytes]:
    out = []
    for entry in json.loads((FIXTURES / "manifest.json").read_text()):
        if not entry["file"].startswith(("en_", "real_")):
            continue
        samples, rate = read_wav(FIXTURES / entry["file"], 16000)
        out += [samples[int((a - 0.3) * rate):int((b + 0.5) * rate)].tobytes() for a, b in entry["speech"]
                if b - a < 8]
    return out


async def burst(engine, pcms: list[bytes], batch: int) -> list[float]:  # type: ignore[no-untyped-def]
    opinion = SecondOpinion(InlineTranscriber(engine), "en", timeout_s=60.0, max_waiting=len(pcms),
                            max_batch=batch)
    for pcm in (pcms * 10)[:10]:  # it learns the engine's pace, as a running server has
        await opinion.ask(pcm, 16000, PROMPT)
    began = time.perf_counter()

    async def one(pcm: bytes) -> float:
        heard = await opinion.ask(pcm, 16000, PROMPT)
        assert heard is not None, f"no answer: {opinion.counts}"
        return time.perf_counter() - began

    done = await asyncio.gather(*(one(p) for p in pcms))
    await opinion.close()
    return sorted(done)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="whisper-tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="1,2,4,8")
    args = ap.parse_args()
    engine = load_free_engine("whisper", args.model, "en", ROOT / "models", args.threads, beam_size=1)
    clips = utterances()
    engine.transcribe(clips[0], PROMPT)  # warm up
    sizes = [int(n) for n in args.sizes.split(",")]
    print(f"{len(clips)} utterances from audio_fixtures/, Whisper {args.model}, {args.threads} threads, greedy")
    print(f"{'n':>3} {'one by one s':>13} {'batch s':>9} {'ratio':>6} {'same words':>11}")
    for n in sizes:
        pcms = (clips * (n // len(clips) + 1))[:n]
        t0 = time.perf_counter()
        alone = [engine.transcribe(p, PROMPT) for p in pcms]
        t1 = time.perf_counter()
        together = engine.transcribe_many(pcms, PROMPT)
        t2 = time.perf_counter()
        same = sum(a.text == b.text for a, b in zip(alone, together, strict=True))
        print(f"{n:3d} {t1 - t0:13.2f} {t2 - t1:9.2f} {(t1 - t0) / (t2 - t1):5.2f}x {same:>7}/{n}")
    print("\nn asks arriving at once at the second opinion (last answer / p50 of all):")
    print(f"{'n':>3} {'one by one':>16} {'batched':>16} {'ratio last':>11}")
    for n in sizes:
        pcms = (clips[1:] * (n // len(clips) + 1))[:n]
        before = asyncio.run(burst(engine, pcms, 1))
        after = asyncio.run(burst(engine, pcms, n))
        print(f"{n:3d} {before[-1]:7.2f} / {statistics.median(before):5.2f} s "
              f"{after[-1]:7.2f} / {statistics.median(after):5.2f} s {before[-1] / after[-1]:10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
