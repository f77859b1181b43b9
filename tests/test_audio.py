import shutil
import subprocess

import numpy as np
import pytest

from voicebot.audio.codecs import level_stats, ulaw_decode, ulaw_encode
from voicebot.audio.resample import StreamResampler, resample
from voicebot.audio.vad import (
    Endpointer,
    SpeechAudio,
    SpeechDetector,
    SpeechEnded,
    SpeechStarted,
    VadConfig,
)
from voicebot.audio.wav import WavError, read_wav, wav_bytes

from .conftest import FIXTURES, manifest


def _reference_ulaw_encode(sample: int) -> int:
    """G.711 μ-law, one sample at a time, straight from the recommendation."""
    value = sample >> 2  # 14-bit
    mask = 0x7F if value < 0 else 0xFF
    magnitude = min(abs(value), 8159) + 33
    segment = magnitude.bit_length() - 6
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)) ^ mask


def test_ulaw_encode_matches_reference_for_every_sample():
    samples = np.arange(-32768, 32768, dtype=np.int32)
    expected = bytes(_reference_ulaw_encode(int(s)) for s in samples)
    assert ulaw_encode(samples.astype(np.int16)) == expected


def test_ulaw_round_trip_is_close_and_idempotent():
    x = np.random.default_rng(1).integers(-30000, 30000, 8000).astype(np.int16)
    y = ulaw_decode(ulaw_encode(x))
    assert np.all(np.abs(x.astype(int) - y) <= np.abs(x.astype(int)) / 16 + 16)
    assert ulaw_encode(y) == ulaw_encode(x)  # decode∘encode is a projection


def test_ulaw_matches_audioop_where_available():
    audioop = pytest.importorskip("audioop")
    x = np.arange(-32768, 32768, dtype=np.int16)
    assert audioop.lin2ulaw(x.tobytes(), 2) == ulaw_encode(x)
    assert audioop.ulaw2lin(bytes(range(256)), 2) == ulaw_decode(bytes(range(256))).tobytes()


def test_level_stats():
    assert level_stats(np.zeros(0, np.int16)) == (-120.0, 0.0)
    db, clipped = level_stats(np.full(100, 32767, np.int16))
    assert db > -0.1 and clipped == 1.0


def test_stream_resampler_chunks_equal_whole_signal_length():
    x = (np.sin(np.arange(16000) / 8) * 8000).astype(np.int16)
    stream = StreamResampler(8000, 16000)
    pieces = [stream.process(x[i : i + 160]) for i in range(0, x.size, 160)]
    pieces.append(stream.process(np.zeros(0, np.int16), last=True))
    assert abs(sum(p.size for p in pieces) - 32000) <= 2
    assert resample(x, 8000, 16000).size == 32000


def test_read_wav_converts_stereo_and_rate(tmp_path):
    import wave

    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.full(3200, 1000, np.int16).tobytes())
    samples, rate = read_wav(path, rate=8000)
    assert rate == 8000 and abs(samples.size - 800) <= 2
    assert read_wav(wav_bytes(np.ones(10, np.int16), 8000))[0].tolist() == [1] * 10


# the same four samples (-32768, -256, 0, 32512 in 16 bits) in each WAV sample width
WIDTHS = {
    1: bytes([0, 127, 128, 255]),  # unsigned, offset 128
    2: np.array([-32768, -256, 0, 32512], "<i2").tobytes(),
    3: b"".join(v.to_bytes(3, "little", signed=True) for v in (-(1 << 23), -65536, 0, 127 << 16)),
    4: np.array([-(1 << 31), -(1 << 24), 0, 127 << 24], "<i4").tobytes(),
}


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_read_wav_takes_every_sample_width(tmp_path, width):
    import wave

    path = tmp_path / "w.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(WIDTHS[width])
    samples, rate = read_wav(path)
    assert rate == 8000 and samples.dtype == np.int16
    assert samples.tolist() == [-32768, -256, 0, 32512]


needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")


@needs_sox
@pytest.mark.parametrize(("encoding", "bits", "channels"), [
    ("u-law", 8, 1), ("a-law", 8, 1), ("u-law", 8, 2), ("signed", 16, 3), ("floating-point", 32, 1),
    ("floating-point", 64, 2)])
def test_read_wav_decodes_g711_float_and_extensible_wavs_as_sox_does(tmp_path, encoding, bits, channels):
    """Telephone recordings come as μ-law or A-law WAVs, editors write floats, and sox
    writes multi-channel PCM as WAVE_FORMAT_EXTENSIBLE: each reads as sox itself
    decodes it to PCM16 (floats within one step of its rounding)."""
    coded, pcm = tmp_path / "coded.wav", tmp_path / "pcm.wav"
    subprocess.run(["sox", "-R", "-n", "-r", "8000", "-c", str(channels), "-e", encoding, "-b", str(bits),
                    str(coded), "synth", "0.5", "sine", "300-3000"], check=True)
    subprocess.run(["sox", str(coded), "-D", "-e", "signed", "-b", "16", "-t", "wavpcm", str(pcm)], check=True)
    assert coded.read_bytes()[20:22] != b"\x01\x00"  # not plain PCM: the fallback reads it
    samples, rate = read_wav(coded)
    reference, _ = read_wav(pcm)
    assert rate == 8000 and samples.size == 4000
    assert np.abs(samples.astype(int) - reference).max() <= (1 if encoding == "floating-point" else 0)


def test_read_wav_names_the_file_that_is_no_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(WavError, match=r"notes\.wav: not a WAV file of PCM, float, μ-law or A-law audio"):
        read_wav(path)
    gsm = bytearray(wav_bytes(np.zeros(8, np.int16), 8000))
    gsm[20:22] = (49).to_bytes(2, "little")  # GSM 6.10
    with pytest.raises(WavError, match="WAV format 49 with 16-bit samples; voicebot reads PCM, float, μ-law"):
        read_wav(bytes(gsm))


def _frames(pattern: str) -> list[tuple[np.ndarray, bool]]:
    return [(np.full(160, i, np.int16), c == "x") for i, c in enumerate(pattern)]


def test_endpointer_needs_consecutive_voiced_frames_and_keeps_preroll():
    ep = Endpointer(VadConfig(start_ms=60, hangover_ms=100, preroll_ms=100))
    events = []
    for frame, voiced in _frames("..x.xxx" + "x" * 5 + "....." + "..."):
        events += ep.push(frame, voiced)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == 1 and len(ends) == 1
    first_audio = next(e for e in events if isinstance(e, SpeechAudio))
    assert first_audio.samples.size == 5 * 160  # 100 ms of pre-roll including the voiced run
    assert first_audio.samples[0] == 2  # starts before the first voiced frame of the run
    assert not ends[0].forced and not ep.speaking


def test_endpointer_caps_utterance_length_and_flushes():
    ep = Endpointer(VadConfig(start_ms=20, hangover_ms=100, max_utterance_ms=200))
    events = []
    for frame, voiced in _frames("x" * 31):
        events += ep.push(frame, voiced)
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert ends and ends[0].forced
    assert ep.speaking  # restarted on continuing speech
    assert isinstance(ep.flush()[0], SpeechEnded)
    assert ep.flush() == []


def test_speech_detector_finds_speech_in_real_audio_and_ignores_silence():
    samples, _ = read_wav(FIXTURES / "en_human_person.wav")
    detector = SpeechDetector(8000)
    events = []
    for i in range(0, samples.size, 160):  # 20 ms, as Twilio sends it
        events += detector.push(samples[i : i + 160])
    events += detector.flush()
    starts = [e.at for e in events if isinstance(e, SpeechStarted)]
    assert 1 <= len(starts) <= 2 and 0.5 < starts[0] < 1.5
    quiet = SpeechDetector(8000)
    assert quiet.push(np.zeros(8000, np.int16)) == []


def test_speech_detector_rejects_bad_rate():
    with pytest.raises(ValueError):
        SpeechDetector(11025)


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: e["file"])
def test_detector_finds_each_fixture_utterance_and_nothing_else(entry):
    """Tuned on the fixtures: one utterance per spoken turn, none in silence or line hiss."""
    samples, _ = read_wav(FIXTURES / entry["file"])
    detector = SpeechDetector(8000)
    events = []
    for i in range(0, samples.size, 160):
        events += detector.push(samples[i : i + 160])
    starts = [e.at for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == len(entry["speech"])
    for at, (begin, _end) in zip(starts, entry["speech"], strict=True):
        assert begin - 0.4 <= at <= begin + 0.2  # pre-roll puts the start just before the speech
