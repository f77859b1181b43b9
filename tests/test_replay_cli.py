"""`voicebot replay` as an operator runs it, against a real server and engine."""

from __future__ import annotations

import asyncio
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.wav import read_wav
from voicebot.replay.suite import error_rate, word_error_rate

from .conftest import FIXTURES, ROOT, manifest

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "replay", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def subset(tmp_path, names: list[str], override: dict[str, str] | None = None):
    entries = [dict(e) for e in manifest() if e["file"] in names]
    for e in entries:
        e["expected"] = (override or {}).get(e["file"], e["expected"])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(entries))
    return path


async def test_replay_single_file_prints_a_call_log(start_server, en_engine, tmp_path):
    server = await start_server(en_engine)
    code, out, _ = await run_cli(str(FIXTURES / "en_human_person.wav"), "--url", server.ws,
                                 "--save-audio", str(tmp_path))
    assert code == 0, out
    assert "[disclosure] You've reached our automated assistant" in out
    assert "disclosure played to the end: yes" in out
    # said at 1 s, over the 7.7 s disclosure (placed by the transcript, no manifest needed)
    assert "1 utterance(s) said over the disclosure, answered once it ended: not timed" in out
    assert "end of speech → bot response" not in out
    assert 'caller "i want to speak to a person"' in out
    assert "outcome: handoff:caller_request" in out
    assert (tmp_path / "en_human_person.bot.wav").stat().st_size > 8000 * 2 * 5


async def test_replay_manifest_verdicts_and_exit_status(start_server, en_engine, tmp_path):
    server = await start_server(en_engine)
    names = ["en_human_person.wav", "en_dtmf_zero.wav"]
    (tmp_path / "good").mkdir()
    (tmp_path / "wrong").mkdir()
    good = subset(tmp_path / "good", names)
    wrong = subset(tmp_path / "wrong", names, {"en_dtmf_zero.wav": "completed"})
    files = [str(FIXTURES / n) for n in names]
    (code, out, err), (wrong_code, wrong_json, _) = await asyncio.gather(  # two operators at once
        run_cli(*files, "--manifest", str(good), "--url", server.ws, "--concurrency", "2"),
        run_cli(*files, "--manifest", str(wrong), "--url", server.ws, "--concurrency", "2", "--json"))
    assert code == 0, out + err
    assert "2/2 fixtures passed" in out and "mean WER 0.00 over 1 files" in out
    assert "] 2/2 " in err and err.count("\n") == 2, err  # one progress line per finished call

    assert wrong_code == 1
    lines = [json.loads(line) for line in wrong_json.splitlines()]
    verdicts = {line["file"].rsplit("/", 1)[1]: line["passed"] for line in lines}
    assert verdicts == {"en_human_person.wav": True, "en_dtmf_zero.wav": False}
    agent = next(line for line in lines if line["file"].endswith("en_human_person.wav"))
    assert agent["wer"] == 0.0 and agent["first_audio_ms"] > 0  # how soon: benchmarks/latency.py


async def test_only_speech_after_the_disclosure_is_timed(start_server, en_engine, tmp_path):
    """A caller who speaks over the disclosure is answered once it ends: that wait is
    the disclosure's, not a response time. One who speaks after it is timed."""
    server = await start_server(en_engine)
    names = ["en_human_person.wav", "en_long_silence_then_agent.wav"]
    code, out, err = await run_cli(*(str(FIXTURES / n) for n in names), "--manifest", str(subset(tmp_path, names)),
                                   "--url", server.ws, "--concurrency", "2", "--json")
    assert code == 0, out + err
    lines = {Path(line["file"]).name: line for line in map(json.loads, out.splitlines())}
    over, after = lines["en_human_person.wav"], lines["en_long_silence_then_agent.wav"]
    assert (over["over_disclosure"], over["response_ms"]) == (1, [])
    assert after["over_disclosure"] == 0 and len(after["response_ms"]) == 1 and 0 < after["response_ms"][0] < 3000


def test_word_error_rate():
    assert word_error_rate("i want to speak to a person", "i want to speak to a person") == 0.0
    assert word_error_rate("i want to speak to a person", "i want a person") == pytest.approx(3 / 7)
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "x") == 1.0
    assert error_rate("비밀번호를 잊어버렸어요", "비밀번호 를 잊어버렸 어요", "ko") == 0.0
    assert error_rate("상담원", "상담", "ko") == pytest.approx(1 / 3)


SUBSET = ["en_human_person.wav", "en_dtmf_zero.wav", "en_hangup_mid_sentence.wav",
          "en_order_status.wav", "real_out_of_domain_weasels.wav"]


async def test_replay_directory_gives_the_fixture_suites_verdicts(start_server, en_engine, tmp_path):
    """`voicebot replay DIR --manifest FILE` judges like tests/test_fixture_suite.py:
    its verdict (from what the gateway saw) equals the server's call record."""
    server = await start_server(en_engine)
    folder = tmp_path / "calls"
    folder.mkdir()
    for name in SUBSET:
        (folder / name).symlink_to(FIXTURES / name)
    manifest_path = subset(folder, SUBSET)
    code, out, err = await run_cli(str(folder), "--manifest", str(manifest_path), "--url", server.ws,
                                   "--concurrency", str(len(SUBSET)), "--json", "--language", "en")
    lines = {Path(line["file"]).name: line for line in map(json.loads, out.splitlines())}
    assert set(lines) == set(SUBSET), err
    for entry in (e for e in manifest() if e["file"] in SUBSET):
        line = lines[entry["file"]]
        record = await server.record(line["call_id"])
        recorded = f"handoff:{record.handoff_reason}" if record.outcome == "handoff" else record.outcome
        assert line["outcome"] == recorded == entry["expected"], (entry["file"], line["outcome"], recorded)
        assert line["passed"] is True
        assert (line["wer"] is None) == (not entry["text"])
    assert lines["en_human_person.wav"]["wer"] == 0.0
    assert code == 0, err


async def test_replay_converts_any_wav_format(start_server, en_engine, tmp_path):
    """A 44.1 kHz stereo 24-bit recording, converted to 8 kHz mono and sent at 4x speed."""
    samples, rate = read_wav(FIXTURES / "en_human_agent.wav", 44100)
    stereo = np.repeat(samples.astype(np.int32)[:, None] << 8, 2, axis=1)  # 24-bit, two channels
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in stereo.ravel())
    path = tmp_path / "agent_44k_stereo_24bit.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(44100)
        w.writeframes(raw)
    server = await start_server(en_engine)
    code, out, err = await run_cli(str(path), "--url", server.ws, "--speed", "4")
    assert code == 0, out + err
    assert 'agent please" (confidence' in out  # the request was heard (the grammar may add an article)
    assert "outcome: handoff:caller_request" in out


async def test_replay_rejects_a_bad_speed():
    code, _, err = await run_cli(str(FIXTURES / "silence.wav"), "--speed", "fast")
    assert code == 2 and "'fast': give a positive number" in err


async def test_replay_takes_a_ulaw_recording_and_reports_a_file_that_is_no_wav(start_server, en_engine, tmp_path):
    """A telephone system's recording (G.711 μ-law WAV) replays like a PCM one; a file
    that is no WAV gets its own error line, and the other files still run."""
    import subprocess

    ulaw, bad = tmp_path / "person_ulaw.wav", tmp_path / "notes.wav"
    subprocess.run(["sox", "-R", str(FIXTURES / "en_human_person.wav"), "-e", "u-law", str(ulaw)], check=True)
    bad.write_text("not audio")
    server = await start_server(en_engine)
    code, out, err = await run_cli(str(ulaw), str(bad), "--url", server.ws, "--speed", "max", "--json")
    lines = {Path(line["file"]).name: line for line in map(json.loads, out.splitlines())}
    assert lines["person_ulaw.wav"]["outcome"] == "handoff:caller_request", out + err
    assert "not a WAV file of PCM, float, μ-law or A-law audio" in lines["notes.wav"]["error"]
    assert code == 1


def test_transcribe_offline_prints_text_confidence_and_timing(capsys):
    from voicebot.cli import main

    path = FIXTURES / "en_human_person.wav"
    assert main(["transcribe", str(path), "--json"]) == 0
    (segment,) = json.loads(capsys.readouterr().out)["segments"]
    assert segment["text"] == "i want to speak to a person" and segment["confidence"] > 0.6
    (start, end), = next(e["speech"] for e in manifest() if e["file"] == path.name)
    assert start - 0.4 < segment["start"] < start and end < segment["end"] < end + 0.8
    assert [w["text"] for w in segment["words"]] == ["i", "want", "to", "speak", "to", "a", "person"]


def test_transcribe_goes_on_past_a_file_it_cannot_read(tmp_path, capsys):
    from voicebot.cli import main

    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert main(["transcribe", str(bad), str(tmp_path / "gone.wav"), str(FIXTURES / "en_human_person.wav")]) == 1
    out, err = capsys.readouterr()
    assert (f"voicebot: {bad}: not a WAV file of PCM, float, μ-law or A-law audio "
            "(file does not start with RIFF id)") in err
    assert "No such file or directory" in err and "Traceback" not in err
    assert "conf 0.8" in out and "i want to speak to a person" in out


async def test_a_replayed_caller_hangs_up_once_the_bot_has_answered(start_server, en_engine):
    """`hangup_when`: the caller waits on the bot, not on a clock (tests on a loaded machine)."""
    from voicebot.replay.client import ReplayOptions, replay

    server = await start_server(en_engine)
    samples, rate = read_wav(FIXTURES / "en_mumble.wav")  # reprompted: the bot would go on listening
    # its first utterance only (1.0-2.96 s): sent at speed 0, the second one's turn could
    # otherwise end and be handed over before the caller's hang-up reaches the server
    samples = samples[: int(6.0 * rate)]
    answered = await replay(server.ws + "/v1/stream", samples, rate, ReplayOptions(
        speed=0, max_call_s=120, hangup_when=lambda so_far: bool(so_far.of("transcript"))))
    await server.call_over()
    record = await server.record(answered.call_id)
    assert answered.of("transcript")
    assert record.outcome == "abandoned"  # the caller hung up, the bot did not end the call
    assert record.ended_at is not None
    assert record.ended_at - record.started_at < 60  # right after the answer, long before max_call_s
