"""scripts/make_heldout.py renders a phrase file (here a tiny Korean one: espeak-ng
and sox only) into telephone-band 8 kHz clips and a manifest, the same bytes twice;
and an English phrase's neural voice (Piper) the same way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.wav import read_wav

from .conftest import ROOT, make_heldout_script

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="needs espeak-ng and sox (scripts/setup --test installs them)")
PHRASES = """language = "ko"
[person_request]
phrases = ["사람 좀 연결해 줘요"]
[routine]
order_status = ["주문 확인해 줘요"]
[no]
phrases = ["아니요"]
"""


def render(phrases: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_heldout.py"), "--phrases", str(phrases),
                           "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def band_share(samples: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / 8000)
    return power[(freqs >= low) & (freqs <= high)].sum() / power.sum()


def test_a_dev_set_renders_repeatably_in_the_telephone_band(tmp_path: Path) -> None:
    phrases = tmp_path / "dev_ko.toml"
    phrases.write_text(PHRASES, encoding="utf-8")
    first, second = render(phrases, tmp_path / "a"), render(phrases, tmp_path / "b")
    assert first == second
    clips = first["clips"]
    by_class = {c: [x for x in clips if x["class"] == c] for c in ("person_request", "routine", "no", "noise")}
    assert [len(v) for v in by_class.values()] == [2, 2, 3, 6]
    assert len({c["voice"] for c in by_class["person_request"]}) == 2  # two voices per phrase
    assert {c["intent"] for c in by_class["routine"]} == {"order_status"}
    for clip in clips:
        a, b = (tmp_path / d / clip["file"] for d in "ab")
        assert a.read_bytes() == b.read_bytes(), clip["file"]
        samples, rate = read_wav(a)
        assert rate == 8000 and samples.size > 8000 * 0.5
        if clip["text"]:
            assert band_share(samples, 250, 3500) > 0.95, clip["file"]
    evaluation_noise = {c["file"]: c for c in json.loads((ROOT / "evaluation/manifest.json").read_text())["clips"]}
    hiss = by_class["noise"][2]["file"]
    assert (tmp_path / "a" / hiss).read_bytes() != (ROOT / "evaluation" / evaluation_noise[hiss]["file"]).read_bytes()


def test_the_neural_voice_renders_repeatably_and_every_english_phrase_has_one(tmp_path: Path) -> None:
    script = make_heldout_script()
    book = {"person_request": {"phrases": ["could somebody there help me out"]},
            "routine": {"order_status": ["where has my parcel got to"]}}
    neural = [j for j in script.phrase_jobs(book, "en") if j.voice.family == "piper"]
    assert [j.cls for j in neural] == ["person_request", "routine"]
    assert not [j for j in script.phrase_jobs(book, "en", neural=False) if j.voice.family == "piper"]
    assert not [j for j in script.phrase_jobs(book, "ko") if j.voice.family == "piper"]
    for d in "ab":
        (tmp_path / d / "audio" / "en").mkdir(parents=True)
    first, second = (script.render(neural[1], tmp_path / d) for d in "ab")
    assert first == second and first.family == "piper" and "CC0" in first.licence
    a, b = (tmp_path / d / first.file for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    samples, rate = read_wav(a)
    assert rate == 8000 and samples.size > 8000 * 1.0
    assert band_share(samples, 250, 3500) > 0.95
