"""`voicebot replay` as an operator runs it, against a real server and engine."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from voicebot.replay.suite import word_error_rate

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
    assert 'caller "i want to speak to a person"' in out
    assert "outcome: handoff:caller_request" in out
    assert (tmp_path / "en_human_person.bot.wav").stat().st_size > 8000 * 2 * 5


async def test_replay_manifest_verdicts_and_exit_status(start_server, en_engine, tmp_path):
    server = await start_server(en_engine)
    names = ["en_human_person.wav", "en_dtmf_zero.wav"]
    good = subset(tmp_path, names)
    code, out, err = await run_cli(*(str(FIXTURES / n) for n in names), "--manifest", str(good),
                                   "--url", server.ws, "--concurrency", "2")
    assert code == 0, out + err
    assert "2/2 fixtures passed" in out and "[2/2]" in err

    wrong = subset(tmp_path, names, {"en_dtmf_zero.wav": "completed"})
    code, out, _ = await run_cli(*(str(FIXTURES / n) for n in names), "--manifest", str(wrong),
                                 "--url", server.ws, "--concurrency", "2", "--json")
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    verdicts = {line["file"].rsplit("/", 1)[1]: line["passed"] for line in lines}
    assert verdicts == {"en_human_person.wav": True, "en_dtmf_zero.wav": False}
    agent = next(line for line in lines if line["file"].endswith("en_human_person.wav"))
    assert agent["wer"] == 0.0 and agent["first_audio_ms"] < 500


def test_word_error_rate():
    assert word_error_rate("i want to speak to a person", "i want to speak to a person") == 0.0
    assert word_error_rate("i want to speak to a person", "i want a person") == pytest.approx(3 / 7)
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "x") == 1.0
