"""Cost per 20 ms frame of the voicebot telephone front end, side by side.

One run measures, on the same deterministic synthetic 8 kHz μ-law signal
(speech-like bursts + silence), the cost per 20 ms frame (160 μ-law bytes) of
the rows listed in ROWS below (see benchmarks/README.md for exactly what each
does). The rows that matter most:

  1f  the whole front end in pure Python, per sample (table decode, sum of
      squares, the same VoiceGate/webrtcvad/Endpointer, 2x interpolation of
      the speech): the fair Python loop,
  9b  the same work with audioop (C) where it exists,
  7b  voicebot, one call on its own (SpeechDetector per call),
  11b voicebot as the server runs it: 100 calls through the FrameBatcher,
      decoded and measured together once per tick,
  6f  the floor: per frame, the work batching cannot remove (webrtcvad on the
      frames over the energy gates + the endpointer, called from Python).

Every row is timed with time.perf_counter over the whole signal; the repeats
go round-robin over the rows (so drift on a shared machine hits all rows
alike) and the best of the repeats is kept. "calls per core" is 20 ms divided
by the cost.

    .venv/bin/python benchmarks/frontend.py [--seconds 60] [--repeats 3] [--calls 10,100] [--json]

audioop is used here only as a speed/correctness reference (it is deprecated
and gone in Python 3.13, where its rows show "—"; voicebot never imports it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import frontend_runs as R

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.vad import SpeechAudio, SpeechDetector, SpeechStarted, VadConfig

FRAME_BYTES, LINE_RATE, FRAME_S = R.FRAME_BYTES, R.LINE_RATE, R.FRAME_S
audioop = R.audioop


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
    rows = ulaw_decode(b"".join(frames)).reshape(-1, FRAME_BYTES)
    gate = 10 ** (config.min_level_dbfs / 10) * FRAME_BYTES * 32768.0**2
    loud = sum(power >= gate for power in R.frame_powers(rows))
    n = len(frames)
    return {
        "loud_fraction": loud / n,                       # frames over the -50 dBFS gate
        "speech_fraction": passed / (n * FRAME_BYTES),   # audio passed on (incl. preroll, hangover)
        "utterances": utterances,
    }


def verify(ulaw: bytes, frames: list[bytes], chunks_1s: list[bytes], chunks_5: list[bytes],
           config: VadConfig, calls: list[int]) -> list[str]:
    notes = []
    decoded = ulaw_decode(ulaw)
    all_codes = bytes(range(256))
    assert ulaw_decode(all_codes).tolist() == R.PY_TABLE, "Python G.711 table differs from ulaw_decode"
    pcm, _ = R.py_frame(ulaw, [0])
    assert pcm.tolist()[1::2] == decoded.tolist(), "per-sample Python decode differs from ulaw_decode"
    if audioop is not None:
        assert decoded.tobytes() == audioop.ulaw2lin(ulaw, 2), "ulaw_decode differs from audioop"
        assert ulaw_decode(all_codes).tobytes() == audioop.ulaw2lin(all_codes, 2)
        notes.append("ulaw_decode == audioop.ulaw2lin == the Python table, bit-exactly "
                     "(whole signal + all 256 codes)")
    n_in = len(ulaw)
    assert R.run_python_loop(frames)() == 2 * n_in
    for name, chunks in (("20 ms frames", frames), ("1 s chunks", chunks_1s)):
        n_out = R.run_decode_resample(chunks)()
        assert n_out == 2 * n_in, f"StreamResampler over {name}: {n_out} != 2 x {n_in}"
    notes.append("16 kHz output = 2 x input for the Python loop and StreamResampler (frames, 1 s chunks)")
    fed = {"7b (one call, 20 ms)": R.run_front_end(frames, config, True)(),
           "8b (one call, 100 ms)": R.run_front_end(chunks_5, config, True)(),
           "1f (Python loop)": R.run_python_front_end(frames, config)()}
    speech = fed["7b (one call, 20 ms)"]
    for n in calls:  # each batched call must feed what it would feed on its own
        alone = sum(R.run_front_end(f, config, True)() for f in R.call_frames(frames, n))
        assert R.run_batched(frames, config, n, True)() == alone, f"FrameBatcher x{n} differs"
    notes.append(f"FrameBatcher x{', x'.join(map(str, calls))}: every call feeds the recogniser "
                 "exactly what its own SpeechDetector would")
    for value in fed.values():
        assert value == speech, f"speech fed to the recogniser differs: {fed}"
    if audioop is not None:
        value = R.run_audioop_like_for_like(frames, config, True)()
        assert abs(value - speech) <= 4 * 20, f"audioop like-for-like fed {value} vs {speech}"
        fed["9b (audioop, ratecv: 2x - 1 per utterance)"] = value
        for n in calls:  # audioop's integer rms moves a level by < 0.1 dB: the same speech to within 1 %
            ours, theirs = R.run_batched(frames, config, n, True)(), R.run_batched(
                frames, config, n, True, with_audioop=True)()
            assert abs(ours - theirs) <= 0.01 * ours, f"A{n}b fed {theirs} vs B{n}b {ours}"
    notes.append("same speech reaches the recogniser in every like-for-like row: "
                 + ", ".join(f"{k} {v:,.0f}" for k, v in fed.items()) + " samples at 16 kHz")
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


def rows_for(calls: list[int]) -> list[tuple[str, str, str | None, str | None]]:
    """(key, label, Python-loop row doing the same work, audioop row doing the same work)."""
    rows = [
        ("1", "Python per sample: table decode + level + 2x interp, all frames", "1", "2"),
        ("1f", "Python per sample: front end like-for-like of 7b (see README)", "1f", "9b"),
        ("2", "audioop ulaw2lin + ratecv 8->16 kHz, all frames", "1", "2"),
        ("2b", "audioop ulaw2lin only", None, "2b"),
        ("2c", "audioop ulaw2lin + ratecv, 1 s chunks", "1", "2c"),
        ("3", "voicebot ulaw_decode only", None, "2b"),
        ("4", "voicebot ulaw_decode + StreamResampler, per frame", "1", "2"),
        ("5", "voicebot ulaw_decode + StreamResampler, 1 s chunks", "1", "2c"),
        ("6", "webrtcvad is_speech alone, every frame", None, None),
        ("6f", "floor: VoiceGate (VAD over the gates) + Endpointer per frame", "1f", "9"),
        ("7", "one call: ulaw_decode + SpeechDetector.push, per frame", None, "9"),
        ("7b", "row 7 + speech resampled as CallSession", "1f", "9b"),
        ("8", "one call, 5-frame (100 ms) messages", None, "9"),
        ("8b", "row 8 + speech resampled as CallSession", "1f", "9b"),
    ]
    for n in calls:
        rows += [(f"B{n}", f"FrameBatcher, {n} calls/tick: decode+level+gate+VAD+endpoint", None, f"A{n}"),
                 (f"B{n}b", f"row B{n} + speech resampled as CallSession", "1f", "9b")]
    for n in calls:
        rows += [(f"A{n}", f"row B{n} with audioop's decode (whole batch) and rms per frame", None, f"A{n}"),
                 (f"A{n}b", f"row A{n} + ratecv of the speech only", "1f", f"A{n}b")]
    rows += [("9", "audioop ulaw2lin + rms + VoiceGate + Endpointer", None, "9"),
             ("9b", "row 9 + ratecv of the speech only", "1f", "9b")]
    return rows


def build_runs(frames: list[bytes], chunks_1s: list[bytes], chunks_5: list[bytes],
               config: VadConfig, calls: list[int]) -> dict[str, Callable[[], int]]:
    pcm_frames = [ulaw_decode(f).tobytes() for f in frames]
    runs: dict[str, Callable[[], int]] = {
        "1": R.run_python_loop(frames),
        "1f": R.run_python_front_end(frames, config),
        "3": R.run_decode(frames),
        "4": R.run_decode_resample(frames),
        "5": R.run_decode_resample(chunks_1s),
        "6": R.run_vad_only(pcm_frames, config.aggressiveness),
        "6f": R.run_floor(frames, config),
        "7": R.run_front_end(frames, config, False),
        "7b": R.run_front_end(frames, config, True),
        "8": R.run_front_end(chunks_5, config, False),
        "8b": R.run_front_end(chunks_5, config, True),
    }
    for n in calls:
        runs[f"B{n}"] = R.run_batched(frames, config, n, False)
        runs[f"B{n}b"] = R.run_batched(frames, config, n, True)
    if audioop is not None:
        runs |= {
            "2": R.run_audioop_resample(frames),
            "2b": R.run_audioop_decode(frames),
            "2c": R.run_audioop_resample(chunks_1s),
            "9": R.run_audioop_like_for_like(frames, config, False),
            "9b": R.run_audioop_like_for_like(frames, config, True),
        }
        for n in calls:
            runs[f"A{n}"] = R.run_batched(frames, config, n, False, with_audioop=True)
            runs[f"A{n}b"] = R.run_batched(frames, config, n, True, with_audioop=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="signal length (default 60)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--calls", default="10,100", help="FrameBatcher rows: calls per tick (default 10,100)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    calls = [int(c) for c in args.calls.split(",") if c]

    config = VadConfig()  # the server's defaults: 20 ms frames, aggressiveness 2, -50 dBFS gate
    ulaw = ulaw_encode(R.synth_signal(args.seconds))
    ulaw = ulaw[: len(ulaw) - len(ulaw) % FRAME_BYTES]  # whole 20 ms frames
    frames = [ulaw[i:i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    chunks_1s = [ulaw[i:i + LINE_RATE] for i in range(0, len(ulaw), LINE_RATE)]
    chunks_5 = [ulaw[i:i + 5 * FRAME_BYTES] for i in range(0, len(ulaw), 5 * FRAME_BYTES)]

    notes = verify(ulaw, frames, chunks_1s, chunks_5, config, calls)
    if audioop is None:
        notes.append("audioop unavailable (Python >= 3.13): rows 2, 2b, 2c, 9, 9b show —")
    runs = build_runs(frames, chunks_1s, chunks_5, config, calls)
    best = measure(runs, args.repeats)
    # a batched row processes `calls` copies of the signal: cost per call-frame
    us = {k: best[k] / (len(frames) * (int(k[1:].rstrip("b")) if k[0] in "AB" else 1)) * 1e6
          for k in best}

    rows = []
    for key, label, py, ao in rows_for(calls):
        cost = us.get(key)
        rows.append({
            "row": key, "what": label, "us_per_frame": None if cost is None else round(cost, 3),
            "python_ref": py, "x_vs_python_loop": _ratio(us, py, key),
            "audioop_ref": ao, "x_vs_audioop": _ratio(us, ao, key),
            "calls_per_core": None if cost is None else int(20_000 / cost),
        })
    result = {
        "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "seconds": len(frames) * FRAME_S, "frames": len(frames),
        "repeats": args.repeats, "calls": calls, "signal": speech_stats(frames, config),
        "rows": rows, "checks": notes,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, us, calls)
    return 0


def _ratio(us: dict[str, float], ref: str | None, key: str) -> float | None:
    if ref is None or ref not in us or key not in us:
        return None
    return round(us[ref] / us[key], 2)


def print_table(r: dict, us: dict[str, float], calls: list[int]) -> None:
    s = r["signal"]
    print(f"voicebot front end, {r['seconds']:.0f} s of 8 kHz μ-law = {r['frames']} frames of 20 ms; "
          f"Python {r['python']}, numpy {r['numpy']}, {r['cpus']} CPUs, load average "
          f"{r['load_average'][0]:.2f}; best of {r['repeats']}")
    print(f"signal: {s['loud_fraction']:.1%} of frames over the -50 dBFS gate, "
          f"{s['speech_fraction']:.1%} of the audio passed on as speech "
          f"({s['utterances']} utterances, incl. preroll + hangover)")
    for n in r["checks"]:
        print(f"check: {n}")
    print()
    head = (f"| {'row':<4} | {'what (per call, per 20 ms frame)':<62} | {'µs/frame':>8} | "
            f"{'x Py loop (ref)':>15} | {'x audioop (ref)':>15} | {'calls/core':>10} |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for row in r["rows"]:
        cost = row["us_per_frame"]
        py = f"{row['x_vs_python_loop']:.2f} ({row['python_ref']})" if row["x_vs_python_loop"] else "—"
        ao = f"{row['x_vs_audioop']:.2f} ({row['audioop_ref']})" if row["x_vs_audioop"] else "—"
        what = ("  " if row["row"].endswith("b") and row["row"] != "2b" else "") + row["what"]
        print(f"| {row['row']:<4} | {what:<62} | {'—' if cost is None else f'{cost:.2f}':>8} | "
              f"{py:>15} | {ao:>15} | "
              f"{'—' if cost is None else format(row['calls_per_core'], ','):>10} |")
    print()
    print("x Py loop / x audioop = cost of the row named in brackets (doing the same work) / this row's;")
    print("> 1 means this row is faster. calls/core = 20 ms / cost (front end only).")
    print()
    server = f"B{max(calls)}b" if calls else "7b"

    def line(what: str, a: str, b: str) -> None:
        if a in us and b in us:
            x = us[a] / us[b]
            word = f"{x:.2f}x faster" if x >= 1 else f"{1 / x:.2f}x slower"
            print(f"  {what:<66} {word:>14}  (row {a} / row {b})")

    print("ratios (same signal, same run):")
    line(f"voicebot as the server runs it ({server}) vs the Python loop", "1f", server)
    line(f"voicebot as the server runs it ({server}) vs audioop", "9b", server)
    line("voicebot, one call on its own (7b) vs the Python loop", "1f", "7b")
    line("voicebot, one call on its own (7b) vs audioop", "9b", "7b")
    if calls:
        n = max(calls)
        line(f"FrameBatcher x{n} without resampling vs audioop", "9", f"B{n}")
        line(f"FrameBatcher x{n}: numpy's decode + level vs audioop's, same batcher", f"A{n}", f"B{n}")
        line(f"FrameBatcher x{n}b: soxr (band-limited) vs ratecv (linear), same batcher",
             f"A{n}b", f"B{n}b")
    line("limit: Python loop vs the per-frame floor (webrtcvad + endpointer)", "1f", "6f")
    if "9" in us and "6f" in us:
        print(f"  {'share of audioop like-for-like that is the floor':<66} {us['6f'] / us['9']:>14.0%}"
              "  (row 6f / row 9)")
    line("soxr MQ vs audioop ratecv, both decode + resample over 1 s chunks", "2c", "5")
    if server in us and "6f" in us:
        print(f"\n  => {server}: {us[server]:.2f} µs per call per 20 ms, "
              f"{20_000 / us[server]:,.0f} calls' front end per core; "
              f"{us['6f'] / us[server]:.0%} of it is the floor (row 6f: {us['6f']:.2f} µs).")


if __name__ == "__main__":
    sys.exit(main())
