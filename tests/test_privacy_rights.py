"""A caller's rights: export everything held about them as portable JSON, and erase
it, through the admin API and the shell (real server, real CLI, one database)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .staff_helpers import KNOWLEDGE, make_staff, seed_call, utterance
from .test_privacy_keys import cli

pytestmark = pytest.mark.e2e
THEM, OTHER = "+15550123", "+15550999"


async def test_export_then_erase_by_caller(start_server, tmp_path):
    from voicebot.asr.fake import FakeEngine

    db = tmp_path / "calls.db"
    server = await start_server(FakeEngine(), db=str(db), knowledge_dir=KNOWLEDGE)
    staff = await make_staff(server.http)
    await seed_call(server, "c-1", [utterance("where is my order", 0.9, 1.0, "order_status")],
                    reason=None, caller=THEM)
    await seed_call(server, "c-2", [utterance("agent please", 0.9, 1.0, "human")], caller=THEM)
    await seed_call(server, "c-3", [utterance("agent please", 0.9, 1.0)], caller=OTHER)
    await staff["sue"].post("/api/calls/c-2/feedback", {"kind": "good_handoff", "comment": "ok"})
    await staff["ada"].post("/api/privacy/opt-out", {"caller": THEM, "opted_out": True})

    assert (await staff["sue"].post("/api/privacy/export", {"caller": THEM}))[0] == 403
    assert (await staff["ada"].post("/api/privacy/export", {"caller": ""}))[0] == 400
    status, export = await staff["ada"].post("/api/privacy/export", {"caller": "+1 555 0123"})
    assert status == 200 and export["format"] == "voicebot.caller-export.v1"
    assert [c["call_id"] for c in export["calls"]] == ["c-1", "c-2"]  # not the other caller's
    first, second = export["calls"]
    assert first["caller"] == THEM and first["outcome"] == "completed"
    assert first["utterances"][0]["text"] == "where is my order"
    assert second["handoff_reason"] == "caller_request"
    assert second["recording"] is None  # recording is off
    assert second["disclosure"] == {"text": "I'm a computer.", "confirmed_by": "mark",
                                    "started_at": pytest.approx(second["started_at"], abs=5),
                                    "played_at": pytest.approx(second["started_at"], abs=5)}
    assert [t["call_id"] for t in export["desk"]["transfers"]] == ["c-2"]
    assert export["desk"]["transfers"][0]["caller"] == THEM
    assert [f["comment"] for f in export["desk"]["feedback"]] == ["ok"]
    assert "caller_sealed" not in first and export["opted_out_of_assistant"] is True

    shell = cli("privacy", "export", "--caller", THEM, env={"VOICEBOT_DB": str(db)})
    assert shell.returncode == 0, shell.stderr
    from_shell = json.loads(shell.stdout)
    assert [c["call_id"] for c in from_shell["calls"]] == ["c-1", "c-2"]
    assert from_shell["opted_out_of_assistant"] is True

    with sqlite3.connect(db) as con:  # what is stored about them, sealed
        stored = [v for row in con.execute(
            "SELECT caller, caller_sealed, summary FROM calls WHERE call_id IN ('c-1', 'c-2') "
            "UNION ALL SELECT payload, '', '' FROM call_events WHERE call_id = 'c-1'")
            for v in row if v]
    assert len(stored) >= 5
    erased = cli("privacy", "erase", "--caller", THEM, env={"VOICEBOT_DB": str(db)})
    assert erased.returncode == 0 and "erased 2 calls" in erased.stderr, erased.stderr
    assert THEM not in erased.stderr + erased.stdout
    status, export = await staff["ada"].post("/api/privacy/export", {"caller": THEM})
    assert export["calls"] == [] and export["desk"] == {"transfers": [], "feedback": []}
    assert export["opted_out_of_assistant"] is False  # the shell's erasure removed it too
    assert await server.record("c-3") is not None
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("calls.db"))
    assert not [v for v in stored if v.encode() in raw]  # overwritten, not just unlinked
    status, audit = await staff["ada"].get("/api/staff/audit")
    actions = [(row["action"], row["detail"]) for row in audit["audit"]]
    assert ("export_caller", "2 calls") in actions and ("erase_caller", "2 calls") in actions
    assert THEM not in json.dumps(audit) and "5550123" not in json.dumps(audit)
