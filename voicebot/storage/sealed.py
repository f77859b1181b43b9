"""A CallStore wrapper that keeps personal data out of any backend and its journal.

It sits outermost (`SealedCallStore(JournalledStore(SqlCallStore(...)))`),
so the backend, and the journal that stands in for it during an outage, only
ever receive pseudonyms and sealed values:

- `caller` is stored as its keyed pseudonym (finds a caller's calls) and the
  number itself, needed for call backs and for the desk, as `caller_sealed`;
- `summary`, every utterance and free-form transcript (text and words, in one
  sealed value in `text`) and every prompt's text are sealed; recognised text is redacted first
  (`voicebot.privacy.redact`), so card or account numbers never reach storage.

Everything else (ids, times, outcome, reason, confidence, intent) stays in
the clear: reports and filters need it and it names no one. Reads undo it, so
the layers above see plain records. Rows written before sealing was turned on
are read as they are and sealed by `voicebot privacy rotate-key`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from voicebot.errors import StoreUnavailable
from voicebot.privacy.crypto import Privacy, UndecryptableData
from voicebot.privacy.redact import redact, redact_utterance
from voicebot.storage.base import EVENT_LISTS, CallRecord, CallStore, utterance_json
from voicebot.types import Utterance, Word

log = logging.getLogger(__name__)
KEY_CHECK = "voicebot key check"
Row = dict[str, Any]


class SealedCallStore:
    def __init__(self, inner: CallStore, privacy: Privacy) -> None:
        self.inner = inner
        self.privacy = privacy

    async def open(self) -> None:
        await self.inner.open()
        try:
            await self.check_key()
        except BaseException:
            await self.inner.close()  # its connection thread would keep the process alive
            raise

    async def check_key(self) -> None:
        """Refuse to write under a key other than the one the stored data is under."""
        try:
            token = await self.inner.claim_meta("key_check", self.privacy.seal(KEY_CHECK))
        except StoreUnavailable:  # calls are answered regardless; new data uses this key
            log.error("call database unavailable at start: the key could not be checked "
                      "against the stored data (it is at the next start)")
            return
        if self.privacy.unseal(token) != KEY_CHECK:
            raise UndecryptableData("the stored data's key check does not match")

    async def close(self) -> None:
        await self.inner.close()

    async def create(self, record: CallRecord) -> None:
        row = seal_row(self.privacy, {n: getattr(record, n) for n in SCALARS})
        await self.inner.create(CallRecord(**row))

    async def update(self, call_id: str, **fields: Any) -> None:
        await self.inner.update(call_id, **seal_row(self.privacy, fields))

    async def add_utterance(self, call_id: str, at: float, utterance: Utterance) -> None:
        item = seal_item(self.privacy, "utterance", utterance_json(utterance))
        words = tuple(Word(w["text"], w["conf"], w["start"], w["end"]) for w in item["words"])
        await self.inner.add_utterance(call_id, at, replace(utterance, text=item["text"],
                                                            words=words))

    async def add_prompt(self, call_id: str, at: float, prompt: dict[str, Any]) -> None:
        await self.inner.add_prompt(call_id, at, seal_item(self.privacy, "prompt", prompt))

    async def add_transcript(self, call_id: str, at: float, item: dict[str, Any]) -> None:
        await self.inner.add_transcript(call_id, at, seal_item(self.privacy, "transcript", item))

    async def get(self, call_or_gateway_id: str) -> CallRecord | None:
        record = await self.inner.get(call_or_gateway_id)
        return None if record is None else unseal_record(self.privacy, record)

    async def calls_of_caller(self, caller: str) -> list[CallRecord]:
        """By pseudonym, and by the number itself for rows from before sealing."""
        found = await self.inner.calls_of_caller(self.privacy.pseudonym(caller))
        if caller.strip() and caller.strip() != self.privacy.pseudonym(caller):
            found += await self.inner.calls_of_caller(caller.strip())
        found.sort(key=lambda r: r.started_at)
        return [unseal_record(self.privacy, r) for r in found]

    async def erase_caller(self, caller: str) -> list[str]:
        """By pseudonym, and by the number itself for rows from before sealing."""
        ids = await self.inner.erase_caller(self.privacy.pseudonym(caller))
        if caller.strip() and caller.strip() != self.privacy.pseudonym(caller):
            ids += await self.inner.erase_caller(caller.strip())
        return ids

    async def erase_started_before(self, cutoff: float) -> list[str]:
        return await self.inner.erase_started_before(cutoff)

    async def claim_meta(self, name: str, value: str) -> str:
        return await self.inner.claim_meta(name, value)


# --- the field rules, shared with the backends' key rotation --------------------------
SCALARS = [n for n in CallRecord.__dataclass_fields__ if n not in EVENT_LISTS.values()]
_WORDS = ("utterance", "transcript")  # events with text and timed words, sealed together


def seal_row(privacy: Privacy, row: Row) -> Row:
    """Call-record columns as stored. A number already sealed is left as it is."""
    row = dict(row)
    if row.get("caller"):
        number = row["caller"]
        row["caller"] = privacy.pseudonym(number)
        row["caller_sealed"] = privacy.seal(number)
    if row.get("summary"):
        row["summary"] = privacy.seal(redact(row["summary"]))
    return row


def unseal_row(privacy: Privacy, row: Row) -> Row:
    row = dict(row)
    if row.get("caller_sealed"):
        row["caller"] = privacy.unseal(row["caller_sealed"])
        row["caller_sealed"] = ""
    if row.get("summary"):
        row["summary"] = privacy.unseal(row["summary"])
    return row


def seal_item(privacy: Privacy, kind: str, item: Row) -> Row:
    item = dict(item)
    if kind in _WORDS:
        item.update(redact_utterance(item))
        inner = {"text": item.get("text", ""), "words": item.get("words", [])}
        packed = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
        sealed = privacy.seal(packed)
        if sealed != packed:  # (a no-op Privacy keeps the plain form)
            item["text"], item["words"] = sealed, []
    elif item.get("text"):
        item["text"] = privacy.seal(item["text"])
    return item


def unseal_item(privacy: Privacy, kind: str, item: Row) -> Row:
    item = dict(item)
    text = item.get("text", "")
    if not text:
        return item
    opened = privacy.unseal(text)
    if kind in _WORDS and opened != text:
        item.update(json.loads(opened))
    else:
        item["text"] = opened
    return item


def unseal_record(privacy: Privacy, record: CallRecord) -> CallRecord:
    row = unseal_row(privacy, {n: getattr(record, n) for n in SCALARS})
    return CallRecord(**row,
                      utterances=[unseal_item(privacy, "utterance", u) for u in record.utterances],
                      prompts=[unseal_item(privacy, "prompt", p) for p in record.prompts],
                      transcripts=[unseal_item(privacy, "transcript", t) for t in record.transcripts])
