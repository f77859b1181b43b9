"""Cost per 20 ms frame of the voicebot telephone front end, side by side.

One run measures, on the same deterministic synthetic 8 kHz μ-law signal
(speech-like bursts + silence), the cost per 20 ms frame (160 μ-law bytes) of:

  1   a per-sample pure-Python loop (G.711 decode + 2x linear interpolation),
  2   stdlib audioop: ulaw2lin + ratecv 8 -> 16 kHz, per frame,
  2b  stdlib audioop: ulaw2lin alone, per frame,
  3   voicebot ulaw_decode alone, per frame,
  4   voicebot ulaw_decode + StreamResampler(8000, 16000).process, per frame,
  5   the same over 1 s chunks (frames queued up),
  6   webrtcvad is_speech alone (20 ms at 8 kHz), per frame,
  7   the voicebot per-call front end as the server runs it: ulaw_decode +
      SpeechDetector(8000).push, per frame,
  7b  row 7 + resampling of the detected speech only to 16 kHz, exactly as
      CallSession.on_audio does (resampler per utterance, .tobytes() for ASR),
  8   row 7 with 5-frame (100 ms) chunks,
  8b  row 7b with 5-frame chunks,
  9   audioop equivalent of row 7 as a plain pair: ulaw2lin + is_speech on
      every frame,
  9b  audioop like-for-like of row 7b: ulaw2lin + audioop.rms energy gate +
      is_speech + voicebot's Endpointer + audioop.ratecv on speech only.

Every row is timed with time.perf_counter over the whole signal; the repeats
go round-robin over the rows (so drift on a shared machine hits all rows
alike) and the best of the repeats is kept. "calls per core" is 20 ms divided
by the cost, i.e. how many calls' front end one core could carry if it did
nothing else (one Python process uses one core).

    .venv/bin/python benchmarks/frontend.py [--seconds 60] [--repeats 3] [--json]

audioop is used here only as a speed/correctness reference (it is deprecated
and gone in Python 3.13; voicebot itself never imports it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import warnings
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import (
    Endpointer,
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechStarted,
    VadConfig,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python >= 3.13
        audioop = None  # type: ignore[assignment]

LINE_RATE = 8000
ENGINE_RATE = 16000
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
FRAME_S = 0.020
SEED = 20240611


# --------------------------------------------------------------------------- signal

def synth_signal(seconds: float, seed: int = SEED) -> np.ndarray:
    """Deterministic speech-like int16 audio at 8 kHz: bursts of voiced
    'syllables' (jittered f0, harmonics shaped by moving formants, syllable
    envelopes, a little fricative noise), 0.8-3 s long, separated by 0.8-4 s
    pauses (the caller listening) with a faint line-noise floor (~ -70 dBFS)
    under the detector's -50 dBFS gate."""
    rng = np.random.default_rng(seed)
    n_total = round(seconds * LINE_RATE)
    out = np.zeros(n_total, dtype=np.float64)
    out += rng.normal(0.0, 10.0, n_total)  # ~ -70 dBFS line noise
    pos = int(rng.uniform(0.3, 1.0) * LINE_RATE)
    while pos < n_total:
        burst = int(rng.uniform(0.8, 3.0) * LINE_RATE)
        end = min(n_total, pos + burst)
        t0 = pos
        while t0 < end:
            syl = int(rng.uniform(0.12, 0.30) * LINE_RATE)
            syl = min(syl, end - t0)
            if syl <= 16:
                break
            out[t0:t0 + syl] += _syllable(rng, syl)
            t0 += syl + int(rng.uniform(0.0, 0.06) * LINE_RATE)
        gap = int(rng.uniform(0.8, 4.0) * LINE_RATE)  # the caller listens
        pos = end + gap
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _syllable(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / LINE_RATE
    f0 = rng.uniform(95, 230) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t
                                                  + rng.uniform(0, 6.3)))
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0) / LINE_RATE
    f1 = rng.uniform(350, 850) + rng.uniform(-100, 100) * t / t[-1]
    f2 = rng.uniform(900, 2200) + rng.uniform(-300, 300) * t / t[-1]
    f3 = rng.uniform(2300, 3000)
    sig = np.zeros(n)
    for k in range(1, int(3600 / f0.min()) + 1):
        fk = k * f0
        gain = (np.exp(-((fk - f1) / 160) ** 2) + 0.6 * np.exp(-((fk - f2) / 220) ** 2)
                + 0.25 * np.exp(-((fk - f3) / 300) ** 2)) / k ** 0.5
        gain = np.where(fk < 3600, gain, 0.0)
        sig += gain * np.sin(k * phase)
    onset = int(n * rng.uniform(0.0, 0.3)) if rng.random() < 0.3 else 0
    if onset:  # fricative onset
        sig[:onset] = rng.normal(0, 0.3, onset) + 0.2 * sig[:onset]
    env = np.sin(np.pi * np.arange(n) / n) ** 0.6
    sig *= env
    level_db = rng.uniform(-22, -12)  # RMS dBFS of the syllable
    rms = np.sqrt(np.mean(sig ** 2)) or 1.0
    return sig * (32768 * 10 ** (level_db / 20) / rms)


# --------------------------------------------------------------------------- row 1: pure Python

def py_frame(frame: bytes, state: list[int]) -> array:
    """Per-sample G.711 μ-law decode + 2x linear interpolation, pure Python.
    `state[0]` carries the previous sample across frames."""
    prev = state[0]
    out = []
    for byte in frame:
        u = ~byte & 0xFF
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        sample = -magnitude if u & 0x80 else magnitude
        out.append((prev + sample) >> 1)
        out.append(sample)
        prev = sample
    state[0] = prev
    return array("h", out)


# --------------------------------------------------------------------------- measured runs
# Each builder returns a zero-argument function that processes the whole
# signal once from fresh per-call state; only that function is timed.

def run_python_loop(frames: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        state = [0]
        n = 0
        for f in frames:
            n += len(py_frame(f, state))
        return n
    return run


def run_audioop_resample(frames: list[bytes]) -> Callable[[], int]:
    ulaw2lin, ratecv = audioop.ulaw2lin, audioop.ratecv

    def run() -> int:
        state = None
        n = 0
        for f in frames:
            out, state = ratecv(ulaw2lin(f, 2), 2, 1, LINE_RATE, ENGINE_RATE, state)
            n += len(out)
        return n // 2
    return run


def run_audioop_decode(frames: list[bytes]) -> Callable[[], int]:
    ulaw2lin = audioop.ulaw2lin

    def run() -> int:
        n = 0
        for f in frames:
            n += len(ulaw2lin(f, 2))
        return n // 2
    return run


def run_decode(frames: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for f in frames:
            n += ulaw_decode(f).size
        return n
    return run


def run_decode_resample(chunks: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        rs = StreamResampler(LINE_RATE, ENGINE_RATE)
        n = 0
        for c in chunks:
            n += rs.process(ulaw_decode(c)).size
        n += rs.process(np.zeros(0, np.int16), last=True).size
        return n
    return run


def run_vad_only(pcm_frames: list[bytes], aggressiveness: int) -> Callable[[], int]:
    def run() -> int:
        vad = webrtcvad.Vad(aggressiveness)
        voiced = 0
        for f in pcm_frames:
            voiced += vad.is_speech(f, LINE_RATE)
        return voiced
    return run


def run_front_end(chunks: list[bytes], config: VadConfig) -> Callable[[], int]:
    """ulaw_decode + SpeechDetector.push per chunk: the per-call work up to the
    events, as twilio_ws → CallSession.on_audio runs it."""
    def run() -> int:
        det = SpeechDetector(LINE_RATE, config)
        n = 0
        for c in chunks:
            n += len(det.push(ulaw_decode(c)))
        return n
    return run


def run_front_end_speech_resample(chunks: list[bytes], config: VadConfig) -> Callable[[], int]:
    """Row 7 + what CallSession.on_audio does with the events: a fresh
    StreamResampler per utterance, resample every SpeechAudio to the engine
    rate and hand bytes on, flush with last=True at SpeechEnded. Returns the
    number of 16 kHz samples that would reach the recogniser."""
    def run() -> int:
        det = SpeechDetector(LINE_RATE, config)
        rs: StreamResampler | None = None
        fed = 0
        for c in chunks:
            for event in det.push(ulaw_decode(c)):
                if isinstance(event, SpeechStarted):
                    rs = StreamResampler(LINE_RATE, ENGINE_RATE)
                elif isinstance(event, SpeechAudio) and rs is not None:
                    fed += len(rs.process(event.samples).tobytes())
                elif isinstance(event, SpeechEnded) and rs is not None:
                    fed += len(rs.process(np.zeros(0, np.int16), last=True).tobytes())
                    rs = None
        for event in det.flush():
            if isinstance(event, SpeechEnded) and rs is not None:
                fed += len(rs.process(np.zeros(0, np.int16), last=True).tobytes())
        return fed // 2
    return run


def run_audioop_vad(frames: list[bytes], aggressiveness: int) -> Callable[[], int]:
    ulaw2lin = audioop.ulaw2lin

    def run() -> int:
        vad = webrtcvad.Vad(aggressiveness)
        voiced = 0
        for f in frames:
            voiced += vad.is_speech(ulaw2lin(f, 2), LINE_RATE)
        return voiced
    return run


def run_audioop_like_for_like(frames: list[bytes], config: VadConfig) -> Callable[[], int]:
    """audioop version of row 7b: same energy gate (RMS ≥ floor), same
    webrtcvad, voicebot's own Endpointer, ratecv on speech only."""
    ulaw2lin, rms, ratecv = audioop.ulaw2lin, audioop.rms, audioop.ratecv
    floor = 32768.0 * 10 ** (config.min_level_dbfs / 20.0)
    frombuffer, int16 = np.frombuffer, np.int16

    def run() -> int:
        vad = webrtcvad.Vad(config.aggressiveness)
        ep = Endpointer(config)
        state: Any = None
        speaking = False
        fed = 0
        for f in frames:
            lin = ulaw2lin(f, 2)
            voiced = rms(lin, 2) >= floor and vad.is_speech(lin, LINE_RATE)
            for event in ep.push(frombuffer(lin, int16), voiced):
                if isinstance(event, SpeechStarted):
                    speaking, state = True, None
                elif isinstance(event, SpeechAudio) and speaking:
                    out, state = ratecv(event.samples.tobytes(), 2, 1, LINE_RATE, ENGINE_RATE, state)
                    fed += len(out)
                elif isinstance(event, SpeechEnded):
                    speaking = False
        return fed // 2
    return run


# --------------------------------------------------------------------------- checks

def speech_stats(frames: list[bytes], config: VadConfig) -> dict[str, float]:
    """How much of the signal is speech, per the server's own detector."""
    det = SpeechDetector(LINE_RATE, config)
    passed = utterances = 0
    for f in frames:
        for e in det.push(ulaw_decode(f)):
            if isinstance(e, SpeechAudio):
                passed += e.samples.size
            elif isinstance(e, SpeechStarted):
                utterances += 1
    vad = webrtcvad.Vad(config.aggressiveness)
    gate = 32768.0 * 10 ** (config.min_level_dbfs / 20.0)
    loud = voiced = 0
    for f in frames:
        x = ulaw_decode(f)
        if np.sqrt(np.mean(x.astype(np.float32) ** 2)) >= gate:
            loud += 1
            voiced += vad.is_speech(x.tobytes(), LINE_RATE)
    n = len(frames)
    return {
        "loud_fraction": loud / n,                       # frames over the energy gate
        "voiced_fraction": voiced / n,                   # ... and voiced per webrtcvad
        "speech_fraction": passed / (n * FRAME_BYTES),   # audio passed on (incl. preroll, hangover)
        "utterances": utterances,
    }


def verify(ulaw: bytes, frames: list[bytes], chunks_1s: list[bytes], chunks_5: list[bytes],
           config: VadConfig) -> list[str]:
    notes = []
    decoded = ulaw_decode(ulaw)
    all_codes = bytes(range(256))
    # baseline decodes what voicebot decodes
    py = [s for s in py_frame(ulaw, [0])[1::2]]
    assert py == decoded.tolist(), "per-sample Python decode differs from ulaw_decode"
    if audioop is not None:
        assert ulaw_decode(ulaw).tobytes() == audioop.ulaw2lin(ulaw, 2), \
            "ulaw_decode differs from audioop.ulaw2lin"
        assert ulaw_decode(all_codes).tobytes() == audioop.ulaw2lin(all_codes, 2), \
            "ulaw_decode differs from audioop.ulaw2lin on the 256 codes"
        notes.append("ulaw_decode == audioop.ulaw2lin bit-exactly (whole signal + all 256 codes)")
    n_in = len(ulaw)
    assert run_python_loop(frames)() == 2 * n_in
    for name, chunks in (("20 ms frames", frames), ("1 s chunks", chunks_1s)):
        n_out = run_decode_resample(chunks)()
        assert n_out == 2 * n_in, f"StreamResampler over {name}: {n_out} != 2 x {n_in}"
    notes.append(f"16 kHz output length = 2 x input ({2 * n_in} samples) for the Python loop "
                 "and StreamResampler per frame and per 1 s chunk")
    if audioop is not None:
        n_out = run_audioop_resample(frames)()
        assert abs(n_out - 2 * n_in) <= 2, f"audioop.ratecv: {n_out} vs {2 * n_in}"
        notes.append(f"audioop.ratecv per frame gives {n_out} samples (2 x input ± 1)")
    a = run_front_end_speech_resample(frames, config)()
    b = run_front_end_speech_resample(chunks_5, config)()
    assert a == b, "SpeechDetector gives different speech per frame and per 5-frame chunk"
    notes.append("SpeechDetector: same speech per 20 ms frame and per 100 ms chunk")
    return notes


# --------------------------------------------------------------------------- timing

def measure(runs: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    best = {k: float("inf") for k in runs}
    gc_was = gc.isenabled()
    for fn in runs.values():  # warm-up (imports, caches, first allocations)
        fn()
    try:
        for _ in range(repeats):
            for key, fn in runs.items():
                gc.collect()
                gc.disable()
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if gc_was:
                    gc.enable()
                best[key] = min(best[key], dt)
    finally:
        if gc_was:
            gc.enable()
    return best


ROWS = [
    # key, label, audioop reference row doing the same work (or None)
    ("1", "per-sample Python loop: decode + 2x interp, per frame", "2"),
    ("2", "audioop ulaw2lin + ratecv 8->16 kHz, per frame", "2"),
    ("2b", "audioop ulaw2lin only, per frame", "2b"),
    ("3", "voicebot ulaw_decode only, per frame", "2b"),
    ("4", "voicebot ulaw_decode + StreamResampler, per frame", "2"),
    ("5", "voicebot ulaw_decode + StreamResampler, 1 s chunks", "2"),
    ("6", "webrtcvad is_speech alone (20 ms @ 8 kHz), per frame", None),
    ("7", "voicebot front end: ulaw_decode + SpeechDetector.push, per frame", "9"),
    ("7b", "  row 7 + resample detected speech only (as CallSession)", "9b"),
    ("8", "voicebot front end, 5-frame (100 ms) chunks", "9"),
    ("8b", "  row 8 + resample detected speech only", "9b"),
    ("9", "audioop ulaw2lin + webrtcvad on every frame, per frame", "9"),
    ("9b", "audioop like-for-like of 7b (rms gate + VAD + Endpointer + ratecv)", "9b"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="signal length (default 60)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)

    config = VadConfig()  # the server's defaults: 20 ms frames, aggressiveness 2, -50 dBFS gate
    pcm = synth_signal(args.seconds)
    ulaw = ulaw_encode(pcm)
    ulaw = ulaw[: len(ulaw) - len(ulaw) % FRAME_BYTES]  # whole 20 ms frames
    frames = [ulaw[i:i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    chunks_1s = [ulaw[i:i + LINE_RATE] for i in range(0, len(ulaw), LINE_RATE)]
    chunks_5 = [ulaw[i:i + 5 * FRAME_BYTES] for i in range(0, len(ulaw), 5 * FRAME_BYTES)]
    pcm_frames = [ulaw_decode(f).tobytes() for f in frames]
    n_frames = len(frames)

    notes = verify(ulaw, frames, chunks_1s, chunks_5, config)
    stats = speech_stats(frames, config)

    runs: dict[str, Callable[[], int]] = {
        "1": run_python_loop(frames),
        "3": run_decode(frames),
        "4": run_decode_resample(frames),
        "5": run_decode_resample(chunks_1s),
        "6": run_vad_only(pcm_frames, config.aggressiveness),
        "7": run_front_end(frames, config),
        "7b": run_front_end_speech_resample(frames, config),
        "8": run_front_end(chunks_5, config),
        "8b": run_front_end_speech_resample(chunks_5, config),
    }
    if audioop is not None:
        runs |= {
            "2": run_audioop_resample(frames),
            "2b": run_audioop_decode(frames),
            "9": run_audioop_vad(frames, config.aggressiveness),
            "9b": run_audioop_like_for_like(frames, config),
        }
    else:
        notes.append("audioop unavailable (Python >= 3.13): rows 2, 2b, 9, 9b skipped")

    best = measure(runs, args.repeats)
    us = {k: best[k] / n_frames * 1e6 for k in best}

    rows = []
    for key, label, ref in ROWS:
        if key not in us:
            continue
        cost = us[key]
        rows.append({
            "row": key, "what": label.strip(), "us_per_frame": round(cost, 3),
            "x_vs_python_loop": round(us["1"] / cost, 2),
            "audioop_ref": ref if ref in us else None,
            "x_vs_audioop": round(us[ref] / cost, 2) if ref in us else None,
            "calls_per_core": int(20_000 / cost),
        })

    def ratio(a: str, b: str) -> float | None:
        return round(us[a] / us[b], 2) if a in us and b in us else None

    ratios = {
        "python_loop/front_end (1/7)": ratio("1", "7"),
        "python_loop/front_end+speech_resample (1/7b)": ratio("1", "7b"),
        "audioop_decode_resample/front_end (2/7)": ratio("2", "7"),
        "audioop_decode_resample/voicebot_decode_resample (2/4)": ratio("2", "4"),
        "audioop_decode_resample/voicebot_decode_resample_1s (2/5)": ratio("2", "5"),
        "python_loop/voicebot_decode_resample (1/4)": ratio("1", "4"),
        "python_loop/voicebot_decode_resample_1s (1/5)": ratio("1", "5"),
        "audioop_decode/voicebot_decode (2b/3)": ratio("2b", "3"),
        "audioop_front_end/voicebot_front_end (9/7)": ratio("9", "7"),
        "audioop_like_for_like/voicebot (9b/7b)": ratio("9b", "7b"),
        "front_end_per_frame/5_frame_chunks (7/8)": ratio("7", "8"),
        "webrtcvad_share_of_front_end (6/7)": ratio("6", "7"),
    }

    result = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "seconds": n_frames * FRAME_S,
        "frames": n_frames,
        "repeats": args.repeats,
        "signal": stats,
        "rows": rows,
        "ratios": ratios,
        "checks": notes,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, us)
    return 0


def print_table(r: dict, us: dict[str, float]) -> None:
    s = r["signal"]
    print(f"voicebot front end, {r['seconds']:.0f} s of 8 kHz μ-law = {r['frames']} frames of 20 ms; "
          f"Python {r['python']}, numpy {r['numpy']}, {r['cpus']} CPUs; best of {r['repeats']}")
    print(f"signal: {s['loud_fraction']:.1%} of frames over the -50 dBFS gate, "
          f"{s['voiced_fraction']:.1%} voiced (webrtcvad), "
          f"{s['speech_fraction']:.1%} of the audio passed on as speech "
          f"({s['utterances']} utterances, incl. preroll + hangover)")
    for n in r["checks"]:
        print(f"check: {n}")
    print()
    head = f"| {'row':<3} | {'what (per call)':<68} | {'µs/frame':>8} | {'x Py loop':>9} | " \
           f"{'x audioop (ref)':>15} | {'calls/core':>10} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for row in r["rows"]:
        ref = (f"{row['x_vs_audioop']:.2f} ({row['audioop_ref']})"
               if row["x_vs_audioop"] is not None else "—")
        what = row["what"] if not row["row"].endswith("b") or row["row"] == "2b" else "  " + row["what"]
        print(f"| {row['row']:<3} | {what:<68} | {row['us_per_frame']:>8.2f} | "
              f"{row['x_vs_python_loop']:>9.1f} | {ref:>15} | {row['calls_per_core']:>10,} |")
    print()
    print("x Py loop = row 1 / row; x audioop = the audioop row doing the same work (in brackets) / row;")
    print("calls/core = 20 ms / cost (front end only, nothing else on the core).")
    print()

    def faster(a: str, b: str) -> str:
        """How row b compares with row a, in words."""
        r = us[a] / us[b]
        return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"

    def line(what: str, b: str, than: str, a: str) -> None:
        if a in us and b in us:
            print(f"  {what:<52} is {faster(a, b):>12} than {than:<34} "
                  f"(row {a} / row {b} = {us[a] / us[b]:.2f})")

    print("ratios (same signal, same run):")
    line("voicebot full front end (decode + VAD)", "7", "the Python loop (decode + interp)", "1")
    line("voicebot full front end (decode + VAD)", "7", "audioop decode + resample", "2")
    line("voicebot front end + speech-only resampling", "7b", "the Python loop", "1")
    line("voicebot decode + resample, per frame", "4", "the Python loop", "1")
    line("voicebot decode + resample, per frame", "4", "audioop decode + resample", "2")
    line("voicebot decode + resample, 1 s chunks", "5", "the Python loop", "1")
    line("voicebot decode + resample, 1 s chunks", "5", "audioop decode + resample", "2")
    line("voicebot ulaw_decode", "3", "audioop ulaw2lin", "2b")
    line("voicebot front end", "7", "audioop ulaw2lin + webrtcvad", "9")
    line("voicebot front end + speech resample", "7b", "audioop like-for-like", "9b")
    line("voicebot front end in 100 ms chunks", "8", "the same in 20 ms frames", "7")
    if "1" in us and "7" in us and "2" in us:
        print(f"\n  => voicebot full front end is {faster('1', '7')} than the Python loop and "
              f"{faster('2', '7')} than audioop decode+resample: "
              f"{20_000 / us['7']:,.0f} calls' front end per core "
              f"({20_000 / us['7b']:,.0f} with speech resampled).")
    if "6" in us and "7" in us:
        print(f"  => webrtcvad on every frame would be {us['6']:.2f} µs of the {us['7']:.2f} µs "
              f"front end ({us['6'] / us['7']:.0%}); the detector only calls it on the "
              f"{r['signal']['loud_fraction']:.0%} of frames over the gate, so the rest is "
              "per-frame Python/numpy overhead.")

if __name__ == "__main__":
    sys.exit(main())
