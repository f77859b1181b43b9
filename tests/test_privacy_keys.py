"""Keys: generated owner-only, refused when readable by others or too short;
stored data under another key stops the server with a clear message; rotation
re-encrypts everything (real SQLite, the real CLI)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys

import pytest

from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.privacy import privacy_for
from voicebot.privacy.crypto import FieldPrivacy, UndecryptableData
from voicebot.privacy.keys import KeySet, Root, load_keys
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.desk import DeskStore
from voicebot.storage.sealed import SealedCallStore

from .conftest import ROOT
from .staff_helpers import utterance

SECRET_A, SECRET_B = "a" * 40, "b" * 40


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicebot.cli", *args], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, env={**os.environ, **env})


def test_a_key_file_is_generated_owner_only_and_reused(tmp_path, caplog):
    path = tmp_path / "keys" / "voicebot.key"
    first = load_keys("", path)
    assert first.generated and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a key" in caplog.text and path.read_text() not in caplog.text
    again = load_keys("", path)
    assert not again.generated and again.current == first.current
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keys("", path)


def test_secrets_are_long_enough_and_derive_distinct_keys(tmp_path):
    with pytest.raises(ConfigError, match="secret_key.*at least 32"):
        load_keys("short", tmp_path / "k")
    root = Root(SECRET_A.encode())
    assert root.cipher_key != root.pseudonym_key and len(root.cipher_key) == 32
    assert not (tmp_path / "k").exists()  # a configured secret writes no file


def test_sealed_values_are_authenticated_and_name_their_key():
    p = FieldPrivacy(KeySet(Root(SECRET_A.encode())))
    sealed = p.seal("where is my order")
    assert sealed.startswith(f"enc1.{p.key_id}.") and p.unseal(sealed) == "where is my order"
    assert p.seal("same") != p.seal("same")  # random nonces
    tampered = sealed[:-3] + ("AAA" if not sealed.endswith("AAA") else "BBB")
    with pytest.raises(UndecryptableData, match="integrity"):
        p.unseal(tampered)
    other = FieldPrivacy(KeySet(Root(SECRET_B.encode())))
    with pytest.raises(UndecryptableData, match="not configured"):
        other.unseal(sealed)
    assert p.unseal("plain legacy text") == "plain legacy text"
    assert p.pseudonym("+1 (555) 010-0123") == p.pseudonym("+15550100123") != other.pseudonym(
        "+15550100123")


async def _seed(settings: Settings, caller: str, text: str) -> None:
    store = SealedCallStore(SqlCallStore(settings.db), privacy_for(settings))
    await store.open()
    desk = DeskStore(settings.db, privacy_for(settings))
    await desk.open()
    await store.create(CallRecord("c1", "native", caller=caller, started_at=1.0))
    await store.add_utterance("c1", 2.0, utterance(text, 0.9, 1.0))
    await store.update("c1", outcome="handoff", summary="Caller asked for a person.")
    await desk.add_transfer("c1", "caller_request", "Caller asked for a person.", caller,
                            "en", None, 3.0)
    await desk.close()
    await store.close()


async def _read(settings: Settings) -> tuple[CallRecord | None, list[CallRecord], str]:
    store = SealedCallStore(SqlCallStore(settings.db), privacy_for(settings))
    await store.open()
    desk = DeskStore(settings.db, privacy_for(settings))
    await desk.open()
    try:
        transfer = await desk.transfer("c1")
        return await store.get("c1"), await store.calls_of_caller("+15550177"), transfer["caller"]
    finally:
        await desk.close()
        await store.close()


def test_another_key_refuses_to_start_and_rotation_re_encrypts(tmp_path):
    db = tmp_path / "calls.db"
    settings = Settings(db=str(db))
    asyncio.run(_seed(settings, "+15550177", "agent please"))
    old_key = settings.key_path
    old_id = privacy_for(settings).key_id

    wrong = cli("serve", "--port", "0", env={"VOICEBOT_DB": str(db),
                                             "VOICEBOT_SECRET_KEY": SECRET_B})
    assert wrong.returncode == 2, wrong.stderr
    assert "refusing to start" in wrong.stderr and "not configured" in wrong.stderr
    assert "+15550177" not in wrong.stderr + wrong.stdout

    done = cli("privacy", "rotate-key", env={"VOICEBOT_DB": str(db)})
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 calls" in done.stderr
    new_id = privacy_for(settings).key_id
    assert new_id != old_id and not (tmp_path / "calls.db.key.new").exists()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".key"))
    assert f"enc1.{old_id}.".encode() not in raw and f"enc1.{new_id}.".encode() in raw
    record, found, desk_caller = asyncio.run(_read(settings))
    assert record is not None and record.caller == "+15550177"
    assert record.utterances[0]["text"] == "agent please"
    assert [r.call_id for r in found] == ["c1"]  # the pseudonym was recomputed
    assert desk_caller == "+15550177"
    assert os.path.exists(old_key)


def test_rotation_with_a_configured_secret_needs_the_previous_one(tmp_path):
    db = tmp_path / "calls.db"
    asyncio.run(_seed(Settings(db=str(db), secret_key=SECRET_A), "+15550177", "agent please"))
    env = {"VOICEBOT_DB": str(db), "VOICEBOT_SECRET_KEY": SECRET_B}
    assert "VOICEBOT_PREVIOUS_SECRET_KEY" in cli("privacy", "rotate-key", env=env).stderr
    done = cli("privacy", "rotate-key", env={**env, "VOICEBOT_PREVIOUS_SECRET_KEY": SECRET_A})
    assert done.returncode == 0, done.stderr
    record, found, _ = asyncio.run(_read(Settings(db=str(db), secret_key=SECRET_B)))
    assert record is not None and record.caller == "+15550177" and len(found) == 1
    with pytest.raises(UndecryptableData):
        asyncio.run(_read(Settings(db=str(db), secret_key=SECRET_A)))


def test_a_separate_pseudonym_key_keeps_pseudonyms_across_rotation(tmp_path):
    separate = "p" * 40
    before = FieldPrivacy(load_keys(SECRET_A, tmp_path / "k", pseudonym_secret=separate))
    after = FieldPrivacy(load_keys(SECRET_B, tmp_path / "k", SECRET_A, separate))
    derived = FieldPrivacy(load_keys(SECRET_A, tmp_path / "k"))
    assert before.pseudonym("+15550177") == after.pseudonym("+15550177")
    assert before.pseudonym("+15550177") != derived.pseudonym("+15550177")
    assert before.key_id == derived.key_id != after.key_id  # only the cipher key rotated
    with pytest.raises(ConfigError, match="pseudonym_key"):
        load_keys(SECRET_A, tmp_path / "k", pseudonym_secret="short")


async def _legacy(db) -> None:
    """A database written before sealing existed: numbers and words in the clear."""
    plain = SqlCallStore(db)
    await plain.open()
    desk = DeskStore(db)
    await desk.open()
    await plain.create(CallRecord("old", "native", caller="+15550188", started_at=1.0,
                                  summary="Caller asked for a person."))
    await plain.add_utterance("old", 2.0, utterance("my card is 4111111111111111", 0.9, 1.0))
    await desk.add_transfer("old", "caller_request", "Caller asked for a person.", "+15550188",
                            "en", None, 3.0)
    await desk.close()
    await plain.close()


def test_rows_from_before_sealing_are_read_then_sealed_by_the_first_rotation(tmp_path):
    db = tmp_path / "calls.db"
    settings = Settings(db=str(db))
    asyncio.run(_legacy(db))

    async def read() -> tuple[CallRecord | None, int]:
        store = SealedCallStore(SqlCallStore(db), privacy_for(settings))
        await store.open()
        try:
            return await store.get("old"), len(await store.calls_of_caller("+15550188"))
        finally:
            await store.close()

    record, found = asyncio.run(read())
    assert record is not None and record.caller == "+15550188" and found == 1
    assert cli("privacy", "rotate-key", env={"VOICEBOT_DB": str(db)}).returncode == 0
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if not p.name.endswith(".key"))
    assert b"5550188" not in raw and b"4111" not in raw and b"person" not in raw
    record, found = asyncio.run(read())
    assert record is not None and record.caller == "+15550188" and found == 1
    assert record.utterances[0]["text"] == "my card is [CARD]"  # redacted on the way
