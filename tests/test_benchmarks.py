"""The benchmarks still run and their built-in checks hold (tiny sizes: seconds, not figures)."""

import json
import re
import subprocess
import sys

import numpy as np
import webrtcvad

from voicebot.audio.vad import VadConfig, VoiceGate, frame_powers
from voicebot.audio.wav import read_wav

from .conftest import FIXTURES, ROOT


def _run(*args: str, block_audioop: bool = False) -> dict:
    prelude = "import sys; sys.modules['audioop'] = None; " if block_audioop else "import sys; "
    code = (prelude + f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); sys.argv = ['bench', *{list(args[1:])!r}]; "
            f"import runpy; runpy.run_path({str(ROOT / 'benchmarks' / args[0])!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _run_on_clips(tmp_path, script: str, clips: list[dict], *args: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/`script` on a manifest of `clips`, with `args`; it must succeed."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"clips": clips}))
    code = (f"import sys; sys.argv = ['bench', '--manifest', {str(manifest)!r}, *{list(args)!r}]; "
            f"import runpy; runpy.run_path({str(ROOT / 'benchmarks' / script)!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_frontend_benchmark_checks_pass_with_and_without_audioop():
    result = _run("frontend.py", "--seconds", "4", "--repeats", "1", "--calls", "3", "--json")
    rows = {r["row"]: r for r in result["rows"]}
    assert {"1", "1f", "6f", "7b", "B3", "B3b", "A3", "A3b"} <= set(rows)
    assert any("FrameBatcher x3" in c for c in result["checks"])
    assert all(r["us_per_frame"] > 0 for r in rows.values() if r["us_per_frame"] is not None)
    bare = _run("frontend.py", "--seconds", "4", "--repeats", "1", "--calls", "3", "--json",
                block_audioop=True)
    bare_rows = {r["row"]: r for r in bare["rows"]}
    assert bare_rows["9b"]["us_per_frame"] is None and bare_rows["9b"]["x_vs_audioop"] is None
    assert bare_rows["B3b"]["us_per_frame"] is not None
    assert bare_rows["A3"]["us_per_frame"] is None  # the audioop like-for-like needs audioop


def test_linear_upsampler_matches_with_and_without_audioop(monkeypatch):
    """asr_rejection --upsampler linear: audioop.ratecv where Python has it, the same
    linear interpolation in numpy where it does not."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import asr_rejection

    line = (np.sin(np.arange(800) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    with_audioop = np.frombuffer(asr_rejection.linear_upsampler(16000)(line), "<i2")
    monkeypatch.setitem(sys.modules, "audioop", None)
    without = np.frombuffer(asr_rejection.linear_upsampler(16000)(line), "<i2")
    assert abs(with_audioop.size - 1600) <= 1 and without.size == 1600
    n = min(with_audioop.size, without.size)
    assert np.abs(with_audioop[:n].astype(int) - without[:n]).max() <= 1  # rounding only
    x = np.frombuffer(line, "<i2")
    assert np.array_equal(without[::2], x)  # interpolation keeps every input sample


def test_vad_gating_benchmark_gated_costs_less_cpu():
    result = _run("vad_gating.py", "--language", "en", "--only", "en_human_agent.wav",
                  "--repeats", "1", "--json")
    (row,) = result["rows"]
    assert 0 < row["speech_s"] < row["audio_s"]
    assert 0 < row["cpu_gated"] < row["cpu_ungated"]


def test_voice_gate_calls_webrtcvad_as_is_speech_would():
    """VoiceGate calls webrtcvad's C function directly: same decisions as Vad.is_speech."""
    samples, _ = read_wav(FIXTURES / "en_human_agent_noisy.wav", 8000)
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160)
    config = VadConfig()
    gate, vad = VoiceGate(8000, config), webrtcvad.Vad(config.aggressiveness)
    floor = None
    decisions = []
    for frame, power in zip(frames, frame_powers(frames), strict=True):
        level = 10 * np.log10(power / (160 * 32768.0**2) + 1e-12)
        loud = level >= config.min_level_dbfs and (floor is None or level >= floor + config.noise_margin_db)
        floor = level if floor is None or level < floor else floor + (level - floor) * 0.02 / 5.0
        expected = loud and vad.is_speech(frame.tobytes(), 8000)
        decisions.append(expected)
        assert gate.voiced(power, frame) == expected
    assert 0 < sum(decisions) < len(decisions)


def test_phone_loop_benchmark_compares_the_loops_on_a_manifest(tmp_path):
    """benchmarks/phone_loop.py on three fixtures: each loop's CPU and separation."""
    clips = [{"file": str(FIXTURES / name), "language": "en", "class": cls}
             for name, cls in (("en_human_agent.wav", "person_request"), ("en_order_status.wav", "routine"),
                               ("real_out_of_domain_voicemail.wav", "out_of_domain"))]
    out = _run_on_clips(tmp_path, "phone_loop.py", clips, "--pips", "1e-3", "--union")
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("fsg", "allphone"))]
    assert [r[0] for r in rows] == ["fsg", "allphone", "fsg"]  # the engine's loop, allphone, the loop on every frame
    assert all(float(r[-5]) > 0 for r in rows)  # CPU ms per second of audio
    assert all(0.0 <= float(r[-4]) <= 1.0 for r in rows)  # AUC over 2 requests x 1 other
    union = re.search(r"one search holding both: ([\d.]+) .* a sentence in (\d) of 3; .* \(first clip\) (\d+)",
                      out.stdout)
    assert union and float(union[1]) > 0 and int(union[3]) > 0, out.stdout


def test_auc_counts_ties_as_half():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from phone_loop import auc

    assert auc([2.0, 3.0], [1.0]) == 1.0
    assert auc([1.0], [1.0, 2.0]) == 0.25


def test_whisper_window_benchmark_prices_the_check_of_a_grammar_phrase(tmp_path):
    """benchmarks/whisper_window.py --check on two fixtures: the greedy search alone and
    with a phrase's fit scored, side by side; the words and meanings are the same."""
    clips = [{"file": str(FIXTURES / name), "language": "en", "class": cls, "text": text}
             for name, cls, text in (("en_human_agent.wav", "person_request", "i want to talk to an agent"),
                                     ("real_out_of_domain_voicemail.wav", "out_of_domain", "leave a message"))]
    out = _run_on_clips(tmp_path, "whisper_window.py", clips, "--check", "where is my order")
    lines = {line[:28].strip(): line[28:].split() for line in out.stdout.splitlines()}
    assert out.stdout.splitlines()[1].split()[-2:] == ["greedy", "greedy+check"], out.stdout
    assert lines["person_request"][0] == lines["person_request"][1], "the check changes no meaning"
    assert lines["word errors (of 10)"][0] == lines["word errors (of 10)"][1]
    assert all(float(s) > 0 for s in lines["seconds per clip p50"]), out.stdout


def test_meaning_cost_benchmark_prices_the_encoder_beside_the_matcher():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "meaning_cost.py")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"3 example sets, \d+ sentences encoded", out.stdout), out.stdout
    assert re.search(r"closeness / text matcher at p50: \d+x", out.stdout), out.stdout


def test_opinion_workers_benchmark_sets_the_engines_side_by_side():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "opinion_workers.py"), "--setups", "1x1@2,2x1",
                          "--sizes", "1,2", "--limit", "3"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1x1@2 last/p50/cpu s" in out.stdout and "2x1 last/p50/cpu s" in out.stdout, out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"\s*[12] ", line)]
    assert [r[0] for r in rows] == ["1", "2"] and all(float(r[5]) > 0 for r in rows), out.stdout
