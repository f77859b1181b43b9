"""After real calls, the database, its WAL and the outage journal hold no caller
number and no word the callers said; staff still read everything in the clear.

Real server, real pocketsphinx, both protocols, and a database outage in the
middle so one real call goes to the journal; then a desk disposition and
feedback with numbers in them, and a seeded utterance full of card, e-mail and
phone numbers. Then the raw bytes of every file are searched.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from voicebot.app import STORE
from voicebot.audio.wav import read_wav
from voicebot.replay.client import ReplayOptions, replay
from voicebot.storage.base import CallRecord

from .conftest import FIXTURES
from .staff_helpers import KNOWLEDGE, make_staff, seed_call, utterance
from .test_journal import Outage, wait_until

pytestmark = pytest.mark.e2e
CALLERS = {"native": "+15550142", "twilio": "+15550143", "journalled": "+15550144",
           "seeded": "+15550145"}
SPOKEN = "my card is 4111 1111 1111 1111 and my email is jane.doe@example.com call 555 010 9876"
NOTES = "called back on 555 0142, customer Zebulon Quixote"


async def _call(server, fixture: str, caller: str, protocol: str = "native") -> str:
    samples, rate = read_wav(FIXTURES / fixture)
    path = "/twilio/media" if protocol == "twilio" else "/v1/stream"
    result = await replay(server.ws + path, samples, rate, ReplayOptions(
        protocol=protocol, caller=caller, marks="immediate", speed=0, max_call_s=30))
    return result.call_id


def _needles(records, extra: list[str], db: Path) -> set[str]:
    """Every number in the forms it could be written, every utterance, and every
    word a caller said that is not also a label stored in the clear (field names
    such as call_id, intent and prompt names, the disclosure text, outcomes, the
    schema's own text such as "-- what the bot recognised")."""
    clear_words = {w for name in CallRecord.__dataclass_fields__ for w in name.split("_")}
    with sqlite3.connect(db) as con:
        schema = " ".join(sql or "" for (sql,) in con.execute("SELECT sql FROM sqlite_master"))
    clear_words |= set(re.findall(r"[a-z']+", schema.lower()))
    said: set[str] = set()
    for r in records:
        clear_words |= set(re.findall(r"[a-z']+", r.disclosure_text.lower()))
        labels = [r.outcome, r.handoff_reason, *(p["name"] for p in r.prompts),
                  *(u.get("intent") or "" for u in r.utterances)]
        clear_words |= {w for label in labels for w in label.split("_")}
        for u in r.utterances:
            said |= {w for w in (u["text"], *u["text"].split()) if len(w) >= 4}  # not a keyed "1"
        said.add(r.summary)
    numbers = {form for n in CALLERS.values() for form in (n, n[1:], n[2:], n[-7:])}
    return numbers | {s for s in said if s and s not in clear_words} | set(extra)


async def test_raw_bytes_hold_no_number_or_transcript(start_server, en_engine, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "db" / "calls.db"
    journal = tmp_path / "local" / "calls.journal"
    server = await start_server(en_engine, db=str(db), journal=str(journal),
                                knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    ids = [await _call(server, "en_human_person.wav", CALLERS["native"]),
           await _call(server, "en_order_status.wav", CALLERS["twilio"], "twilio")]

    store = server.app[STORE]
    outage = Outage(store, db.parent)
    await outage.begin()
    ids.append(await _call(server, "en_caribbean_track.wav", CALLERS["journalled"]))
    assert store.pending > 0
    journal_bytes = journal.read_bytes()
    assert journal.stat().st_mode & 0o077 == 0  # owner-only
    outage.restore()
    await wait_until(lambda: store.up and store.pending == 0)

    await seed_call(server, "seeded", [utterance(SPOKEN, 0.9, 1.0)], caller=CALLERS["seeded"])
    ids.append("seeded")
    assert (await staff["ann"].post(f"/api/transfers/{ids[0]}/claim"))[0] == 200
    status, _ = await staff["ann"].post(f"/api/calls/{ids[0]}/disposition",
                                        {"disposition": "resolved", "notes": NOTES})
    assert status == 200
    status, _ = await staff["sue"].post(f"/api/calls/{ids[0]}/feedback", {
        "kind": "transcript_wrong", "utterance": 0, "correction": "put me through to Zebulon"})
    assert status in (200, 201)

    await server.call_over()
    await server.stored()  # read below from the database file itself
    records = [await server.record(i) for i in ids]
    assert [r.caller for r in records] == list(CALLERS.values())  # read back in the clear
    assert records[0].utterances[0]["text"] == "i want to speak to a person"
    assert records[3].utterances[0]["text"] == ("my card is [CARD] and my email is [EMAIL] "
                                                "call [PHONE]")
    status, listed = await staff["sue"].get("/api/calls")
    assert {c["caller"] for c in listed["calls"]} == set(CALLERS.values())
    status, shown = await staff["sue"].get(f"/api/calls/{ids[0]}")
    assert shown["caller"] == CALLERS["native"] and shown["transfer"]["notes"] == NOTES
    assert shown["utterances"][0]["words"][0]["text"] == "i"

    # the card in the forms it could be written; not "4111" alone: four digits also occur
    # in the clear numbers (timings in ms) by chance, and did once in a WAL
    card = ["4111 1111", "41111111", "1111 1111"]
    needles = _needles(records, [NOTES, "Zebulon", "Quixote", *card, "jane.doe", "example.com"], db)
    assert "want" in needles and "+15550142" in needles and "package" in needles
    names = {p.name for p in db.parent.iterdir()}
    assert names <= {"calls.db", "calls.db-wal", "calls.db-shm", "calls.db.key"}  # no audio kept
    for path in db.parent.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path  # owner-only
    files = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()
             and not p.name.endswith(".key")}
    files["journal (during the outage)"] = journal_bytes
    assert any(name.endswith("-wal") or name.endswith(".db") for name in files)
    secret = Path(server.settings.key_path).read_bytes().strip()
    found = {(name, n) for name, data in files.items()
             for n in (*needles, secret.decode()) if n.encode() in data}
    assert not found, f"in the clear at rest: {sorted(found)}"
    logged = {n for n in (*needles, secret.decode())  # whole words: "espeak.py" is no hit
              if re.search(rf"(?<![\w+]){re.escape(n)}(?!\w)", caplog.text)}
    assert not logged, f"in the logs: {sorted(logged)}"
