"""Recording with consent (VOICEBOT_RECORDING=consent): real server, real
WebSocket calls, real caller audio. The caller's audio is kept only after a
DTMF 1 or a "yes", encrypted at rest, fetched by supervisors, exported,
erased with the caller and by its own retention; recording off never asks."""

from __future__ import annotations

import base64
import json
import stat

import numpy as np
import pytest

from voicebot.app import DESK, REGISTRY, STORE
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav
from voicebot.privacy.crypto import FieldPrivacy, UndecryptableData
from voicebot.privacy.keys import KeySet, new_root
from voicebot.replay.client import ReplayOptions, replay
from voicebot.staff.privacy import Retention, erase_expired
from voicebot.storage.recordings import RecordingStore
from voicebot.tts.pyttsx3_tts import Pyttsx3Synthesizer

from .conftest import FIXTURES
from .staff_helpers import KNOWLEDGE, make_staff
from .test_privacy_keys import cli

pytestmark = pytest.mark.e2e
CALLER = "+15550171"
RATE = 8000
SPEECH = (1.0, 2.1)  # "where is my order" in en_order_status.wav, said after the consent


async def _call(server, samples: np.ndarray, protocol: str = "native", **options):
    defaults = dict(caller=CALLER, marks="immediate", speed=1.0, hangup_at=3.0, protocol=protocol)
    return await replay(server.ws + ("/twilio/media" if protocol == "twilio" else "/v1/stream"),
                        samples, RATE, ReplayOptions(**{**defaults, **options}))


def _recordings(server) -> RecordingStore:
    services = server.app[REGISTRY].services
    return services.recordings or RecordingStore(server.settings.recordings_path, None)  # type: ignore[arg-type]


def _stream(samples: np.ndarray, seconds: float) -> np.ndarray:
    """What the client sends: the recording, then digital silence, for `seconds`."""
    out = np.zeros(int(seconds * RATE), np.int16)
    out[: min(samples.size, out.size)] = samples[: out.size]
    return out


def _said(text: str, at: float, seconds: float) -> np.ndarray:
    """`text` spoken by espeak-ng at `at` s, over the fixtures' line noise floor."""
    audio, rate = Pyttsx3Synthesizer(165).synthesize(text, "en-us")
    voice = resample(audio, rate, RATE)
    floor, _ = read_wav(FIXTURES / "silence.wav")
    out = _stream(floor, seconds)
    start = int(at * RATE)
    out[start: start + voice.size] = voice[: out.size - start]
    return out


@pytest.mark.parametrize("protocol", ["native", "twilio"])
async def test_consent_keeps_the_callers_audio_encrypted_for_supervisors_only(start_server, en_engine,
                                                                            protocol):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, recording="consent")
    staff = await make_staff(server.http)
    samples, _ = read_wav(FIXTURES / "en_order_status.wav")
    result = await _call(server, samples, protocol, keys_after={"recording_consent": "1"})
    record = await server.record(result.call_id)
    names = [p["name"] for p in record.prompts]
    assert names[:2] == ["disclosure", "recording_consent"]
    assert record.recording_consent == "given"

    recording = await _recordings(server).read(record.call_id)
    kept = np.frombuffer(recording.pcm, "<i2")
    sent = _stream(samples, 3.0)
    start = sent.tobytes().find(recording.pcm[:1600])  # where the consent came
    assert start >= 0 and start % 2 == 0
    start //= 2
    assert start < SPEECH[0] * RATE and start + kept.size > SPEECH[1] * RATE  # the words are in it
    assert np.array_equal(kept, sent[start: start + kept.size])  # sample for sample
    assert kept.size >= sent.size - start - RATE // 10  # to the end of the call
    speech = slice(int(SPEECH[0] * RATE) - start, int(SPEECH[1] * RATE) - start)
    assert np.sqrt(np.mean(kept[speech].astype(float) ** 2)) > 300  # speech, not the noise floor

    path = _recordings(server).path(record.call_id)
    raw = path.read_bytes()
    said = sent[int(SPEECH[0] * RATE): int(SPEECH[1] * RATE)].tobytes()
    assert not any(said[i: i + 32] in raw for i in range(0, len(said) - 32, 400))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    url = f"/api/calls/{record.call_id}/recording"
    assert (await staff["ann"].get(url))[0] == 403  # a desk agent
    status, body = await staff["sue"].get(url)
    assert status == 200
    wav, rate = read_wav(body)
    assert rate == RATE and np.array_equal(wav, kept)
    status, audit = await staff["ada"].get("/api/staff/audit")
    assert any(r["action"] == "read_recording" and r["call_id"] == record.call_id
               for r in audit["audit"])

    status, export = await staff["ada"].post("/api/privacy/export", {"caller": CALLER})
    exported = export["calls"][0]["recording"]
    assert exported["format"] == "audio/wav" and exported["seconds"] == pytest.approx(kept.size / RATE, abs=0.01)
    assert np.array_equal(read_wav(base64.b64decode(exported["wav_base64"]))[0], kept)

    if protocol == "native":  # the shell's export is the same code, with the same keys
        shell = cli("privacy", "export", "--caller", CALLER, env={"VOICEBOT_DB": server.settings.db})
        assert shell.returncode == 0, shell.stderr
        from_shell = json.loads(shell.stdout)["calls"][0]["recording"]["wav_base64"]
        assert np.array_equal(read_wav(base64.b64decode(from_shell))[0], kept)

    assert (await staff["ada"].post("/api/privacy/erase", {"caller": CALLER}))[0] == 200
    assert not path.exists() and await _recordings(server).read(record.call_id) is None
    assert (await staff["sue"].get(url))[0] == 404


@pytest.mark.parametrize(("answer", "consent"), [({"recording_consent": "2"}, "refused"),
                                                 ({}, "no_answer")])
async def test_no_consent_keeps_nothing(start_server, en_engine, answer, consent):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, recording="consent",
                                no_input_timeout_s=0.5)
    samples, _ = read_wav(FIXTURES / "en_order_status.wav")
    result = await _call(server, samples, keys_after=answer)
    assert [e["name"] for e in result.of("prompt")][:2] == ["disclosure", "recording_consent"]
    assert (await server.record(result.call_id)).recording_consent == consent
    assert not _recordings(server).path(result.call_id).exists()
    assert not list(_recordings(server).directory.glob("*"))


@pytest.mark.parametrize(("word", "consent"), [("yes", "given"), ("no", "refused")])
async def test_a_spoken_answer(start_server, en_engine, word, consent):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, recording="consent")
    result = await _call(server, _said(word, 1.0, 3.5), hangup_at=3.5)
    record = await server.record(result.call_id)
    assert record.utterances[0]["source"] == "speech" and record.utterances[0]["intent"] == word
    assert record.recording_consent == consent
    assert _recordings(server).path(result.call_id).exists() is (consent == "given")


async def test_a_person_is_reachable_at_the_consent_question(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, recording="consent")
    samples, _ = read_wav(FIXTURES / "silence.wav")
    result = await _call(server, samples, keys_after={"recording_consent": "0"}, hangup_at=None,
                         max_call_s=20)
    assert result.outcome == "handoff:caller_request"
    assert [e["name"] for e in result.of("prompt")] == ["disclosure", "recording_consent", "handoff"]
    assert (await server.record(result.call_id)).recording_consent == "no_answer"


async def test_recording_off_never_asks_and_keeps_nothing(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE)
    assert server.settings.recording == "off" and server.app[REGISTRY].services.recordings is None
    samples, _ = read_wav(FIXTURES / "en_order_status.wav")
    result = await _call(server, samples, keys_after={"recording_consent": "1"})
    assert "recording_consent" not in [e["name"] for e in result.of("prompt")]
    assert (await server.record(result.call_id)).recording_consent == ""
    assert not _recordings(server).directory.exists()


async def test_recordings_have_their_own_retention(start_server, en_engine):
    server = await start_server(en_engine, knowledge_dir=KNOWLEDGE, recording="consent")
    samples, _ = read_wav(FIXTURES / "en_order_status.wav")
    result = await _call(server, samples, keys_after={"recording_consent": "1"}, hangup_at=1.5)
    recordings = _recordings(server)
    assert recordings.path(result.call_id).exists()
    desk = server.app[DESK]
    kept = Retention(0, recordings, recording_days=1.0)  # a day old at the earliest: kept
    assert await erase_expired(server.app[STORE], desk.desk, kept) == ([], 0)
    assert recordings.path(result.call_id).exists()
    aged = Retention(0, recordings, recording_days=1e-9)
    assert aged.active and await erase_expired(server.app[STORE], desk.desk, aged) == ([], 1)
    assert not recordings.path(result.call_id).exists()
    assert (await server.record(result.call_id)).recording_consent == "given"  # the call stays


async def test_rotation_reseals_recordings_and_a_foreign_key_is_refused(tmp_path):
    old, new = KeySet(new_root()), new_root()
    store = RecordingStore(tmp_path / "rec", FieldPrivacy(old))
    sink = store.start("c1", RATE)
    audio = (np.arange(int(RATE * 2.5)) % 200 - 100).astype("<i2").tobytes()
    sink.write(audio)
    await sink.close()
    assert (await store.read("c1")).pcm == audio
    assert await RecordingStore(tmp_path / "rec", FieldPrivacy(KeySet(new, (old.current,)))).rewrite() == 1
    assert (await RecordingStore(tmp_path / "rec", FieldPrivacy(KeySet(new))).read("c1")).pcm == audio
    with pytest.raises(UndecryptableData, match="not configured"):
        await store.check_keys()  # the old key alone no longer reads it


async def test_a_failing_disk_ends_the_recording_not_the_call(tmp_path, caplog):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    store = RecordingStore(blocked, FieldPrivacy(KeySet(new_root())))
    sink = store.start("c1", RATE)
    sink.write(bytes(RATE * 2 * 3))  # three seconds: the first chunk already fails
    await sink.close()  # neither raises
    assert "c1" in caplog.text and "writing the recording failed" in caplog.text
    assert await store.read("c1") is None
