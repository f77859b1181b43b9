"""Checks on audio_fixtures/: the manifest matches the WAV files.

The fast tests only read the committed files. The slow one regenerates
everything with scripts/make_fixtures.py and compares bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "audio_fixtures"
SCRIPT = REPO / "scripts" / "make_fixtures.py"
RATE = 8000

EXPECTED = {
    "handoff:caller_request",
    "handoff:low_confidence",
    "handoff:no_input",
    "completed",
    "abandoned",
}
KEYS = {"file", "language", "expected", "text", "speech", "dtmf", "hangup_at", "source", "licence", "notes"}
DTMF_DIGITS = set("0123456789*#ABCD")


def _manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))


MANIFEST = _manifest()
IDS = [e["file"] for e in MANIFEST]


def _read(name: str) -> tuple[np.ndarray, wave._wave_params]:
    with wave.open(str(FIXTURES / name), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return data, params


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _ulaw_grid() -> set[int]:
    """The 256 PCM values a G.711 mu-law decoder can output."""
    u = ~np.arange(256) & 0xFF
    mag = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return set(np.where(u & 0x80, -mag, mag).tolist())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_is_a_list_of_unique_files():
    assert isinstance(MANIFEST, list) and MANIFEST
    assert len(IDS) == len(set(IDS))


def test_every_wav_in_folder_is_in_manifest():
    on_disk = {p.name for p in FIXTURES.glob("*.wav")}
    assert on_disk == set(IDS)


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_entry_fields(entry):
    assert set(entry) == KEYS
    assert entry["expected"] in EXPECTED
    assert entry["language"] in {"en", "ko"}
    assert isinstance(entry["source"], str) and entry["source"].strip()
    assert isinstance(entry["licence"], str) and entry["licence"].strip()
    assert isinstance(entry["notes"], str)
    assert isinstance(entry["text"], list)
    assert len(entry["text"]) == len(entry["speech"])
    for text in entry["text"]:
        assert isinstance(text, str) and text.strip()
        assert text == text.lower()
    for event in entry["dtmf"]:
        assert set(event) == {"digit", "at"}
        assert event["digit"] in DTMF_DIGITS
        assert isinstance(event["at"], (int, float)) and event["at"] >= 0
    if entry["expected"] == "abandoned":
        assert entry["hangup_at"] is not None
    if not entry["speech"] and entry["expected"] == "handoff:caller_request":
        assert entry["dtmf"], "a silent caller can only ask for a human by DTMF"


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_wav_format_and_timings(entry):
    path = FIXTURES / entry["file"]
    assert path.is_file()
    data, params = _read(entry["file"])
    assert params.nchannels == 1
    assert params.sampwidth == 2
    assert params.framerate == RATE
    assert params.comptype == "NONE"
    duration = params.nframes / RATE
    assert duration > 0

    previous_end = 0.0
    for start, end in entry["speech"]:
        assert 0.0 <= previous_end <= start < end <= duration
        previous_end = end
    for event in entry["dtmf"]:
        assert event["at"] <= duration
    if entry["hangup_at"] is not None:
        assert 0.0 < entry["hangup_at"] <= duration


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_samples_survived_a_mulaw_round_trip(entry):
    data, _ = _read(entry["file"])
    values = set(np.unique(data).tolist())
    assert values <= _ulaw_grid()


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["speech"]],
                         ids=[e["file"] for e in MANIFEST if e["speech"]])
def test_speech_ranges_are_louder_than_their_surroundings(entry):
    data, params = _read(entry["file"])
    duration = params.nframes / RATE
    inside = np.zeros(len(data), dtype=bool)
    for start, end in entry["speech"]:
        inside[int(start * RATE):int(np.ceil(end * RATE))] = True

    for start, end in entry["speech"]:
        speech = data[int(start * RATE):int(end * RATE)]
        # up to 0.5 s of non-speech on each side of the range
        lo, hi = max(0.0, start - 0.5), min(duration, end + 0.5)
        around = np.zeros(len(data), dtype=bool)
        around[int(lo * RATE):int(start * RATE)] = True
        around[int(np.ceil(end * RATE)):int(hi * RATE)] = True
        around &= ~inside
        assert around.any(), "every utterance needs some silence around it"
        speech_rms, around_rms = _rms(speech), _rms(data[around])
        assert speech_rms > 60.0  # above about -55 dBFS: not empty
        assert speech_rms > 2.0 * around_rms, (start, end, speech_rms, around_rms)  # at least 6 dB


@pytest.mark.parametrize("entry", [e for e in MANIFEST if not e["speech"]],
                         ids=[e["file"] for e in MANIFEST if not e["speech"]])
def test_files_without_speech_have_no_loud_parts(entry):
    data, _ = _read(entry["file"])
    frames = data[: len(data) // 160 * 160].reshape(-1, 160).astype(np.float64)
    loudest = float(np.sqrt(np.mean(frames**2, axis=1)).max())
    assert loudest < 32768 * 10 ** (-25 / 20)  # nothing above -25 dBFS in any 20 ms frame


def _real_sources_installed() -> bool:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import make_fixtures
    finally:
        sys.path.pop(0)
    return make_fixtures.real_sources_available()


@pytest.mark.slow
def test_regeneration_is_byte_identical(tmp_path):
    """scripts/make_fixtures.py reproduces the committed fixtures exactly.

    Synthetic fixtures need espeak-ng (the committed ones were made with
    espeak-ng 1.51); the real recordings also need the Debian packages
    asterisk-core-sounds-en-wav and pocketsphinx-testdata, and are
    compared (together with manifest.json) only when those are installed.
    """
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    full = _real_sources_installed()
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path)]
    if not full:
        cmd.append("--synthetic-only")
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)

    generated = sorted(p.name for p in tmp_path.iterdir())
    synthetic = [e["file"] for e in MANIFEST if e["source"].startswith("generated by scripts/make_fixtures.py")]
    assert set(synthetic) <= set(generated)
    compare = generated if full else synthetic
    if full:
        assert set(generated) == set(IDS) | {"manifest.json"}
    mismatched = [name for name in compare if _sha256(tmp_path / name) != _sha256(FIXTURES / name)]
    assert not mismatched, f"regenerated bytes differ: {mismatched}"
