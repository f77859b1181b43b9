"""SealedCallStore over the real SQLite store: round trips with real keys, and
with the no-op `NoPrivacy` (redaction still applies, nothing else changes)."""

from __future__ import annotations

from voicebot.privacy.crypto import FieldPrivacy, NoPrivacy
from voicebot.privacy.keys import KeySet, new_root
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.sealed import SealedCallStore

from .staff_helpers import utterance


async def _round_trip(tmp_path, privacy) -> tuple[CallRecord, list[str]]:
    store = SealedCallStore(SqlCallStore(tmp_path / "calls.db"), privacy)
    await store.open()
    try:
        await store.create(CallRecord("c1", "native", caller="+15550190", started_at=1.0))
        await store.add_utterance("c1", 2.0, utterance("agent please", 0.9, 1.0))
        await store.add_utterance("c1", 3.0, utterance("card 4111111111111111", 0.8, 2.0))
        await store.add_prompt("c1", 2.5, {"name": "menu", "text": "How can I help?"})
        await store.add_transcript("c1", 4.0, {"start": 1.0, "end": 2.0, "status": "done",
                                               "text": "call me on 555 010 0123",
                                               "words": []})
        await store.update("c1", outcome="handoff", summary='Caller said "agent please".')
        record = await store.get("c1")
        assert record is not None
        return record, [r.call_id for r in await store.calls_of_caller("+1 555 0190")]
    finally:
        await store.close()


async def test_round_trip_with_real_keys_and_with_no_privacy(tmp_path):
    for privacy in (FieldPrivacy(KeySet(new_root())), NoPrivacy()):
        (tmp_path / type(privacy).__name__).mkdir()
        record, found = await _round_trip(tmp_path / type(privacy).__name__, privacy)
        assert record.caller == "+15550190" and record.summary == 'Caller said "agent please".'
        assert [u["text"] for u in record.utterances] == ["agent please", "card [CARD]"]
        assert [w["text"] for w in record.utterances[0]["words"]] == ["agent", "please"]
        assert [w["text"] for w in record.utterances[1]["words"]] == ["card", "[CARD]"]
        assert record.prompts[0]["text"] == "How can I help?"
        assert record.transcripts[0]["text"] == "call me on [PHONE]"  # free-form, redacted too
        assert found == ["c1"]  # any spelling of the number
