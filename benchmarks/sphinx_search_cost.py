"""CPU per second of audio of pocketsphinx's two searches (the grammar's sentence
search and the phone-loop rejection model), under search settings that might
make them cheaper, and how each setting changes what the grammar hears.

    .venv/bin/python benchmarks/sphinx_search_cost.py            # all variants, ~7 min
    .venv/bin/python benchmarks/sphinx_search_cost.py now topn2

Each variant builds the engine with extra decoder settings for the sentence
search and/or the phone loop; every en_*.wav fixture of audio_fixtures/ is
decoded whole by each search alone (CPU time of process_raw), then through the
engine as a call streams it (100 ms chunks), and its words and confidence are
compared with today's settings (`now`). A variant that changes words or moves
a confidence by more than 0.15 would need the margin refitted
(benchmarks/asr_rejection.py --fit) and the held-out set run again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.asr import sphinx_engine as se  # noqa: E402
from voicebot.audio.resample import StreamResampler  # noqa: E402
from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.dialog.compile import vocabulary  # noqa: E402
from voicebot.dialog.flow import DEFAULT_FLOW, load_flow  # noqa: E402

# name: (extra settings of the sentence search, extra settings of the phone loop)
VARIANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "now": ({}, {}),
    "loop_ds2": ({}, {"ds": 2}),  # acoustic scores every other frame
    "both_ds2": ({"ds": 2}, {"ds": 2}),
    "loop_beam30": ({}, {"beam": 1e-30, "pbeam": 1e-30}),  # narrower than the default 1e-48
    "sent_beam60": ({"beam": 1e-60, "pbeam": 1e-60}, {}),  # narrower than _WIDE_BEAMS' 1e-80
    "topn2": ({"topn": 2}, {"topn": 2}),  # Gaussians per codebook: 2 instead of 4
}


def pcm16k(path: Path) -> bytes:
    """A WAV file as the engine hears it: 16-bit samples at its rate."""
    samples, rate = read_wav(path)
    resampler = StreamResampler(rate, se.SAMPLE_RATE)
    pcm = np.concatenate([resampler.process(samples), resampler.process(np.zeros(0, np.int16), last=True)])
    return pcm.astype(np.int16).tobytes()


def clips() -> list[tuple[str, bytes]]:
    return [(path.name, pcm16k(path)) for path in sorted((ROOT / "audio_fixtures").glob("en_*.wav"))]


def engine_with(sentence_extra: dict[str, object], loop_extra: dict[str, object]) -> se.SphinxEngine:
    plain = se._decoder

    def decoder(feat: str, **config: object) -> object:
        extra = sentence_extra if "wbeam" in config else loop_extra  # the sentence search has wide beams
        return plain(feat, **{**config, **extra})

    se._decoder = decoder  # type: ignore[assignment]
    try:
        return se.SphinxEngine(vocabulary(load_flow(DEFAULT_FLOW), "en"), pool_size=1)
    finally:
        se._decoder = plain


def main() -> int:
    names = sys.argv[1:] or list(VARIANTS)
    audio = clips()
    seconds = sum(len(pcm) / 2 / se.SAMPLE_RATE for _, pcm in audio)
    print(f"{len(audio)} en_*.wav fixtures, {seconds:.0f} s of audio; CPU ms per second of audio")
    print(f"{'variant':12} {'sentences':>9} {'loop':>6} {'total':>6} {'ratio':>6}   heard differently")
    heard: dict[str, dict[str, tuple[str, float]]] = {}
    base_total = 0.0
    for name in names:
        engine = engine_with(*VARIANTS[name])
        heard[name] = {}
        for clip, pcm in audio:
            stream = engine.stream("open")
            for i in range(0, len(pcm), 3200):
                stream.accept(pcm[i:i + 3200])
            result = stream.finish()
            heard[name][clip] = (result.text, result.confidence)
        cost = {"sentences": 0.0, "loop": 0.0}
        decoders = engine.acquire()
        assert decoders is not None
        for _, pcm in audio:
            cmn = engine.estimate_cmn(pcm[: 2 * se.SAMPLE_RATE])
            for search in cost:
                d = getattr(decoders, search)
                d.set_cmn(cmn)
                d.start_utt()
                began = time.process_time()
                d.process_raw(pcm, False, False)
                cost[search] += time.process_time() - began
                d.end_utt()
        total = sum(cost.values())
        base_total = base_total or total
        now = heard.get("now", heard[name])
        moved = [c for c in heard[name] if heard[name][c][0] != now[c][0] or abs(heard[name][c][1] - now[c][1]) > 0.15]
        print(f"{name:12} {cost['sentences'] / seconds * 1000:9.1f} {cost['loop'] / seconds * 1000:6.1f} "
              f"{total / seconds * 1000:6.1f} {base_total / total:5.2f}x   {len(moved)} of {len(audio)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
