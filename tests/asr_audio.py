"""Caller audio for the speech-engine tests and benchmarks/asr_rejection.py.

`telephone(text, voice)` speaks `text` with espeak-ng and sends it through a
telephone line the way a caller's audio reaches the recogniser:

    espeak-ng -v VOICE -s SPEED -p PITCH -w raw.wav TEXT        (22050 Hz)
    sox -R raw.wav -r 8000 line.wav sinc 300-3400 norm -20     (band-pass, 8 kHz, level)
    + 300-3400 Hz Gaussian line noise at SNR `snr_db` (numpy, fixed seed)
    μ-law encode + decode (G.711, voicebot.audio.codecs)
    + 0.3 s of line noise before (the VAD pre-roll) and 0.5 s after (its hang-over)
    soxr 8 kHz -> 16 kHz (what CallSession does before the engine)

and returns 16 kHz PCM16 bytes. Deterministic: espeak-ng output is, sox runs
repeatable (`-R`: its dither to 16 bits is seeded; without it the same sentence
cut off mid-word scored 0.42-0.64 from run to run), and the noise is seeded
from crc32 of the text and voice (numpy RandomState).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

from voicebot.audio.codecs import ulaw_decode, ulaw_encode
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav

LINE_RATE = 8000
PREROLL_S = 0.3
HANGOVER_S = 0.5


def tools_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def _band_noise(rng: np.random.RandomState, n: int) -> np.ndarray:
    """White Gaussian noise limited to 300-3400 Hz (FFT mask), unit RMS."""
    noise = rng.standard_normal(n + 256)
    spec = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(noise.size, 1 / LINE_RATE)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    out = np.fft.irfft(spec, noise.size)[128:128 + n]
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-9)


def line_audio(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
               snr_db: float = 30.0, amplitude: int = 100, level_db: float = -6.0,
               lowpass_hz: int | None = None, workdir: Path | None = None) -> np.ndarray:
    """`text` spoken through the telephone chain: int16 samples at 8 kHz."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        raw, line = Path(tmp) / "raw.wav", Path(tmp) / "line.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                        "-a", str(amplitude), "-w", str(raw), text],
                       check=True, capture_output=True)
        effects = ["sinc", "300-3400"]
        if lowpass_hz:
            effects += ["sinc", f"-{lowpass_hz}"]
        subprocess.run(["sox", "-R", "-V1", str(raw), "-r", str(LINE_RATE), "-c", "1", "-b", "16",
                        str(line), *effects, "norm", str(level_db)],
                       check=True, capture_output=True)
        speech, rate = read_wav(line)
    assert rate == LINE_RATE
    speech = speech.astype(np.float64)
    seed = zlib.crc32(f"{voice}|{speed}|{pitch}|{text}".encode())
    rng = np.random.RandomState(seed)
    pre, post = int(PREROLL_S * LINE_RATE), int(HANGOVER_S * LINE_RATE)
    signal = np.concatenate([np.zeros(pre), speech, np.zeros(post)])
    speech_rms = float(np.sqrt(np.mean(speech**2))) or 1.0
    signal += _band_noise(rng, signal.size) * speech_rms * 10 ** (-snr_db / 20)
    clipped = np.clip(np.round(signal), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(clipped))


def telephone(text: str, voice: str = "en-us", rate: int = 16000, **kw) -> bytes:
    """`text` through the telephone chain, resampled to `rate`: PCM16 bytes."""
    samples = line_audio(text, voice, **kw)
    if rate != LINE_RATE:
        samples = resample(samples, LINE_RATE, rate)
    return samples.astype("<i2").tobytes()


def noise(seconds: float, level_dbfs: float = -30.0, seed: int = 7, rate: int = 16000) -> bytes:
    """Band-limited line hiss through the μ-law chain, no speech."""
    rng = np.random.RandomState(seed)
    n = int(seconds * LINE_RATE)
    sig = _band_noise(rng, n) * 32768 * 10 ** (level_dbfs / 20)
    line = ulaw_decode(ulaw_encode(np.clip(np.round(sig), -32768, 32767).astype(np.int16)))
    return resample(line, LINE_RATE, rate).astype("<i2").tobytes()


def chunks(pcm: bytes, rate: int = 16000, ms: int = 100) -> list[bytes]:
    """Split PCM16 into pieces of `ms` (how the runner batches queued frames)."""
    step = rate * ms // 1000 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


# --- the measurement corpus (benchmarks/asr_rejection.py; tests use a subset) ----------
# (voice, words per minute, pitch)
EN_VOICES = (("en-us", 160, 50), ("en-us+f3", 170, 60), ("en+m3", 175, 45),
             ("en-gb", 160, 50), ("en-gb-x-rp", 150, 50), ("en-us+f2", 165, 55))
KO_VOICES = (("ko", 150, 50), ("ko+f3", 160, 60), ("ko+m3", 140, 45), ("ko", 180, 50))

EN_UNRELATED = (
    "the weather in the mountains was lovely last spring",
    "my grandmother grows tomatoes in her garden",
    "what time does the museum open on sunday",
    "the quick brown fox jumps over the lazy dog",
    "we should paint the kitchen a brighter color",
    "my brother plays the guitar in a jazz band",
    "please remember to feed the cat before you leave",
    "the train to chicago was delayed by two hours",
    "can you recommend a good italian restaurant nearby",
    "the children built a snowman in the park",
    "i think it is going to rain this afternoon",
    "she bought a new bicycle for her birthday",
    "how much does a ticket to the concert cost",
    "the library closes early on holidays",
    "our football team won the match last night",
    "there is a strange noise coming from the engine",
    "hello is anyone there",
    "hello",
    "um well let me think about that for a second",
    "i was wondering if you could maybe help me with something",
)
FOREIGN = (
    ("fr", "je voudrais réserver une table pour deux personnes"),
    ("fr", "il fait très beau aujourd'hui à paris"),
    ("fr", "où se trouve la gare s'il vous plaît"),
    ("fr", "nous allons au cinéma ce soir avec des amis"),
    ("es", "buenos días quisiera hablar con mi hermana"),
    ("es", "el tren sale de la estación a las ocho"),
    ("es", "me gusta mucho la comida de este restaurante"),
    ("es", "mañana vamos a la playa con los niños"),
    ("de", "ich möchte bitte ein glas wasser haben"),
    ("de", "das wetter ist heute sehr schön"),
    ("de", "wo ist der nächste bahnhof"),
)
KO_UNRELATED = (
    "오늘 날씨가 정말 좋네요",
    "저는 어제 친구와 영화를 봤어요",
    "이 근처에 맛있는 식당이 있나요",
    "내일 아침에 일찍 일어나야 해요",
    "고양이가 소파 위에서 자고 있어요",
    "지하철역이 어디에 있어요",
    "주말에 등산을 갈 거예요",
    "커피 한 잔 주세요",
)
