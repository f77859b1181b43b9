"""The measured rows of benchmarks/frontend.py: the signal, and one builder per row.

Each builder returns a zero-argument function that processes the whole signal
once from fresh per-call state; only that function is timed. Every function
returns a count (samples or frames) that `verify` uses to check the rows do
the same work.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
import webrtcvad

from voicebot.audio.batch import FrameBatcher
from voicebot.audio.codecs import ulaw_decode
from voicebot.audio.resample import StreamResampler
from voicebot.audio.vad import (
    Endpointer,
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechStarted,
    VadConfig,
    VadEvent,
    VoiceGate,
    frame_powers,
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
SPEECH_BATCH = LINE_RATE // 10  # CallSession resamples speech in 100 ms soxr batches
_FS = 32768.0**2


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



# --------------------------------------------------------------------------- pure Python (rows 1, 1f)

def _g711_table() -> list[int]:
    """The 256 μ-law code → sample values by the G.711 formula, as a plain list."""
    table = []
    for byte in range(256):
        u = ~byte & 0xFF
        magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
        table.append(-magnitude if u & 0x80 else magnitude)
    return table


PY_TABLE = _g711_table()


def py_frame(frame: bytes, state: list[int], table: list[int] = PY_TABLE) -> tuple[array, float]:
    """Row 1's per-frame work, one sample at a time: table decode, sum of squares
    (the level), 2x linear interpolation. `state[0]` carries the last sample."""
    prev = state[0]
    out: list[int] = []
    append = out.append
    acc = 0
    for byte in frame:
        s = table[byte]
        acc += s * s
        append((prev + s) >> 1)
        append(s)
        prev = s
    state[0] = prev
    return array("h", out), 10.0 * math.log10(acc / (len(frame) * _FS) + 1e-12)


def run_python_loop(frames: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        state = [0]
        n = 0
        for f in frames:
            n += len(py_frame(f, state)[0])
        return n
    return run


def _py_interp(samples: np.ndarray, state: list[int]) -> bytes:
    prev = state[0]
    out: list[int] = []
    append = out.append
    for s in samples.tolist():
        append((prev + s) >> 1)
        append(s)
        prev = s
    state[0] = prev
    return array("h", out).tobytes()


def run_python_front_end(frames: list[bytes], config: VadConfig) -> Callable[[], int]:
    """Row 1f: the like-for-like of row 11b in pure Python per sample: table
    decode + sum of squares, the same VoiceGate (noise floor, gates,
    webrtcvad) and Endpointer, 2x interpolation of the speech only."""
    table = PY_TABLE

    def run() -> int:
        gate, ep = VoiceGate(LINE_RATE, config), Endpointer(config)
        state = [0]
        fed = 0
        for f in frames:
            pcm: list[int] = []
            append = pcm.append
            acc = 0
            for byte in f:
                s = table[byte]
                acc += s * s
                append(s)
            frame = array("h", pcm)
            for event in ep.push(frame, gate.voiced(acc, frame)):
                if isinstance(event, SpeechStarted):
                    state = [0]
                elif isinstance(event, SpeechAudio):
                    fed += len(_py_interp(event.samples, state)) // 2
        return fed
    return run


# --------------------------------------------------------------------------- audioop (rows 2, 2b, 9, 9b)

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


def run_audioop_vad(frames: list[bytes], aggressiveness: int) -> Callable[[], int]:
    ulaw2lin = audioop.ulaw2lin

    def run() -> int:
        vad = webrtcvad.Vad(aggressiveness)
        voiced = 0
        for f in frames:
            voiced += vad.is_speech(ulaw2lin(f, 2), LINE_RATE)
        return voiced
    return run


def run_audioop_like_for_like(frames: list[bytes], config: VadConfig, resample: bool) -> Callable[[], int]:
    """Rows 9/9b: ulaw2lin, level from audioop.rms, the same VoiceGate and
    Endpointer (9), + ratecv of the speech only, state reset per utterance (9b)."""
    ulaw2lin, rms, ratecv = audioop.ulaw2lin, audioop.rms, audioop.ratecv
    frombuffer, int16 = np.frombuffer, np.int16

    def run() -> int:
        gate, ep = VoiceGate(LINE_RATE, config), Endpointer(config)
        state: Any = None
        fed = 0
        for f in frames:
            lin = ulaw2lin(f, 2)
            r = rms(lin, 2)  # audioop's integer RMS: the power to within rounding
            frame = frombuffer(lin, int16)
            for event in ep.push(frame, gate.voiced(r * r * FRAME_BYTES, frame)):
                if not resample:
                    fed += 1
                elif isinstance(event, SpeechStarted):
                    state = None
                elif isinstance(event, SpeechAudio):
                    out, state = ratecv(event.samples.tobytes(), 2, 1, LINE_RATE, ENGINE_RATE, state)
                    fed += len(out) // 2
        return fed
    return run


# --------------------------------------------------------------------------- voicebot (rows 3-8, 10-11)

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


def run_floor(frames: list[bytes], config: VadConfig) -> Callable[[], int]:
    """Row 6f: what no batching removes: per frame, the call's VoiceGate
    (noise floor, gates, webrtcvad on the frames over them) and Endpointer,
    from samples and energies computed beforehand (untimed)."""
    rows = ulaw_decode(b"".join(frames)).reshape(-1, FRAME_BYTES)
    powers = frame_powers(rows)

    def run() -> int:
        gate, ep = VoiceGate(LINE_RATE, config), Endpointer(config)
        voiced, push = gate.voiced, ep.push
        n = 0
        for frame, power in zip(rows, powers, strict=True):
            n += len(push(frame, voiced(power, frame)))
        return n
    return run


class SpeechSink:
    """What CallSession does with the VAD events: a StreamResampler per
    utterance (100 ms soxr batches), each SpeechAudio resampled and turned into
    bytes for the recogniser, flushed at SpeechEnded. Counts samples fed."""

    def __init__(self) -> None:
        self.rs: StreamResampler | None = None
        self.fed = 0

    def __call__(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self.rs = StreamResampler(LINE_RATE, ENGINE_RATE, batch=SPEECH_BATCH)
            elif isinstance(event, SpeechAudio) and self.rs is not None:
                self.fed += len(self.rs.process(event.samples).tobytes()) // 2
            elif isinstance(event, SpeechEnded) and self.rs is not None:
                self.fed += len(self.rs.process(np.zeros(0, np.int16), last=True).tobytes()) // 2
                self.rs = None


def run_front_end(chunks: list[bytes], config: VadConfig, resample: bool) -> Callable[[], int]:
    """Rows 7/7b/8/8b: one call on its own, as CallSession runs it without the
    FrameBatcher: ulaw_decode + SpeechDetector.push per chunk (+ SpeechSink)."""
    def run() -> int:
        det = SpeechDetector(LINE_RATE, config)
        sink = SpeechSink()
        n = 0
        for c in chunks:
            events = det.push(ulaw_decode(c))
            n += len(events)
            if resample:
                sink(events)
        if resample:
            sink(det.flush())
            return sink.fed
        return n
    return run


class RatecvSink(SpeechSink):
    """SpeechSink with audioop.ratecv (linear interpolation, state reset per utterance)."""

    def __call__(self, events: list[VadEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self.state: Any = None
            elif isinstance(event, SpeechAudio):
                out, self.state = audioop.ratecv(event.samples.tobytes(), 2, 1, LINE_RATE,
                                                 ENGINE_RATE, self.state)
                self.fed += len(out) // 2


def audioop_decode(raw: bytes, encoding: str) -> np.ndarray:
    """FrameBatcher's decode step done by audioop (the like-for-like of decode_line)."""
    return np.frombuffer(audioop.ulaw2lin(raw, 2), np.int16)


def audioop_measure(frames: np.ndarray) -> list[float]:
    """FrameBatcher's level step done by audioop: rms per frame, squared back to a power."""
    rms = audioop.rms
    n = frames.shape[1]
    return [float(rms(f, 2) ** 2 * n) for f in frames]


def call_frames(frames: list[bytes], calls: int) -> list[list[bytes]]:
    """`calls` copies of the signal, each starting elsewhere (speech not in lockstep)."""
    step = len(frames) // calls
    return [frames[k * step:] + frames[:k * step] for k in range(calls)]


def run_batched(frames: list[bytes], config: VadConfig, calls: int, resample: bool,
                with_audioop: bool = False) -> Callable[[], int]:
    """Rows B/Bb: `calls` calls through one FrameBatcher, each pushing one
    20 ms message per tick, one flush per tick, as the server runs it.
    Rows A/Ab (`with_audioop`): the same batcher with audioop doing its DSP
    (ulaw2lin of the batch, rms per frame, ratecv of the speech)."""
    per_call = call_frames(frames, calls)
    ticks = list(zip(*per_call, strict=True))
    dsp: dict[str, Any] = {"decode": audioop_decode, "measure": audioop_measure} if with_audioop else {}
    sink_type = RatecvSink if with_audioop else SpeechSink

    def run() -> int:
        batcher = FrameBatcher(None, max_frames=1 << 30, **dsp)
        sinks = [sink_type() for _ in range(calls)]
        counted: list[int] = []
        lanes = [batcher.lane(LINE_RATE, "mulaw", config,
                              sinks[k] if resample else (lambda ev: counted.append(len(ev))))
                 for k in range(calls)]
        pushes = [lane.push for lane in lanes]
        flush = batcher.flush
        for tick in ticks:
            for push, data in zip(pushes, tick, strict=True):
                push(data)
            flush()
        for lane, sink in zip(lanes, sinks, strict=True):
            tail = lane.end()
            if resample:
                sink(tail)
        return sum(s.fed for s in sinks) if resample else sum(counted)
    return run
