"""KPIs and fairness from stored calls: the arithmetic on built calls, then
`voicebot report` over a real SQLite database written by the real stores."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from voicebot.cli import main
from voicebot.config import Settings
from voicebot.events import CallStarted, CallTagged
from voicebot.flowrun import load_settings_flow
from voicebot.ops.calls import CallFacts, SqlCallSource, StaticCallSource, Turn
from voicebot.ops.fairness import fairness, time_band
from voicebot.ops.kpi import compute, edit_distance
from voicebot.ops.report import build_report, flow_understanding, parse_when, render
from voicebot.ops.tags import CallTagger, TagStore
from voicebot.storage.base import CallRecord
from voicebot.storage.callstore import SqlCallStore
from voicebot.storage.desk import DeskStore, Feedback
from voicebot.types import Source, Utterance

intent_of = flow_understanding(load_settings_flow(Settings()))  # the default flow's intents
DAY = 86400.0
T0 = 1_780_000_000.0  # a fixed instant: no clock in these tests


def _call(n: int, outcome: str = "completed", reason: str = "", caller: str = "", *,
          at: float = T0, turns: tuple[Turn, ...] = (), reviewed: bool = False,
          language: str = "en", labels: dict[str, str] | None = None) -> CallFacts:
    return CallFacts(f"c{n}", at, at + 30 + n, outcome, reason, language, "native", caller,
                     turns, reviewed, labels or {})


def test_kpis_from_built_calls():
    turns = (Turn("i want to speak to a person", 0.9, "human"),
             Turn("where is my order", 0.4, "order_status", correction="where is my order"))
    calls = [
        _call(1, "completed", caller="+1555", turns=turns, reviewed=True),
        _call(2, "handoff", "caller_request", caller="+1555", at=T0 + DAY),
        _call(3, "handoff", "low_confidence", caller="+1666", at=T0 + 9 * DAY),
        _call(4, "abandoned", caller=""),
        _call(5, "", caller="anonymous"),  # still in progress
    ]
    k = compute(calls, threshold=0.6, intent_of=intent_of)
    assert (k.calls, k.ended, k.completed, k.handoffs, k.abandoned) == (5, 4, 1, 2, 1)
    assert k.containment == 0.25 and k.escalation_rate == 0.5
    assert k.escalations == {"caller_request": 1, "low_confidence": 1}
    assert k.handle_median_s == pytest.approx(32.5)
    # c1 is followed by c2 within 7 days; c2 and c3 are not; withheld numbers don't count
    assert k.repeat_base == 3 and k.repeat_rate == pytest.approx(1 / 3)
    assert k.understood == 0.5 and k.speech_turns == 2
    assert k.reviewed_calls == 1 and k.wer == 0.0 and k.intent_accuracy == 1.0


def test_staff_corrections_give_wer_and_intent_accuracy():
    assert edit_distance("where is my order".split(), "where is the border".split()) == 2
    wrong = (Turn("where is the border", 0.7, None, correction="where is my order"),
             Turn("agent please", 0.9, "human"))
    k = compute([_call(1, turns=wrong, reviewed=True), _call(2, turns=wrong)],
                intent_of=intent_of)
    assert k.reviewed_turns == 2  # the unreviewed call's turns are not judged
    assert k.wer == pytest.approx(2 / 6)
    assert intent_of("en", "where is my order") == "order_status"
    assert intent_of("en", "where is the border") is None  # so the first turn's intent was missed
    assert k.intent_accuracy == 0.5


def _group(lang: str, n: int, confidence: float, understood_text: str) -> list[CallFacts]:
    return [_call(i, "completed" if confidence >= 0.6 else "handoff",
                  "" if confidence >= 0.6 else "low_confidence",
                  turns=(Turn(understood_text, confidence, None),), language=lang,
                  labels={"line": "narrowband" if lang == "ko" else "wideband", "plan": "gold"})
            for i in range(n)]


def test_fairness_flags_the_group_the_bot_understands_less():
    calls = _group("en", 10, 0.9, "yes") + _group("ko", 10, 0.3, "네")
    f = fairness(calls, threshold=0.6, min_calls=5)
    flagged = {(x["dimension"], x["group"], x["kpi"]) for x in f["flags"]}
    assert ("language", "ko", "understood") in flagged
    assert ("line", "narrowband", "containment") in flagged
    assert not any(g == "en" for _, g, _ in flagged)
    ko = f["dimensions"]["language"]["ko"]
    assert ko["understood"] == 0.0 and ko["ratios"]["understood"] == 0.0
    assert f["dimensions"]["plan"]["gold"]["flagged"] == []  # one group: nothing to compare
    assert f["dimensions"]["time_of_day"][time_band(T0)]["calls"] == 20


def test_small_groups_and_close_groups_are_not_flagged():
    close = _group("en", 10, 0.9, "yes") + [
        *_group("ko", 9, 0.9, "네"), *_group("ko", 1, 0.3, "네")]  # 0.9 of the best: inside
    assert fairness(close, min_calls=5)["flags"] == []
    few = _group("en", 10, 0.9, "yes") + _group("ko", 3, 0.3, "네")
    assert fairness(few, min_calls=5)["flags"] == []
    assert fairness(few, min_calls=3)["flags"]


def test_twilio_segment_parameters_are_labels():
    from voicebot.call.registry import segment_labels

    assert segment_labels({"caller": "+1555", "segment_plan": "gold", "token": "x"}) == {
        "plan": "gold"}


def test_parse_when():
    assert parse_when("7d", T0) == T0 - 7 * DAY
    assert parse_when("2026-12-01", T0) == parse_when("2026-12-01T00:00+00:00", T0)
    with pytest.raises(ValueError, match="not a time"):
        parse_when("last tuesday", T0)


# --- a real database ---------------------------------------------------------------
async def _seed(path: str, now: float) -> None:
    """Calls as the server's stores write them: 8 English wideband calls the bot
    understood, 8 Korean telephone calls it mostly did not; one correction."""
    store, desk, tagger = SqlCallStore(path), DeskStore(path), CallTagger(TagStore(path))
    await store.open()
    await desk.open()
    await tagger.open()
    for i in range(16):
        ko = i >= 8
        call_id = f"{'ko' if ko else 'en'}-{i}"
        await store.create(CallRecord(call_id, "native", caller=f"+1555000{i % 5}",
                                      language="ko" if ko else "en", started_at=now - 3600 + i))
        text, conf = ("네", 0.3) if ko else ("where is my order", 0.9)
        await store.add_utterance(call_id, now, Utterance(text, conf, 1.0, 2.0, Source.SPEECH))
        outcome = {"outcome": "handoff", "handoff_reason": "low_confidence"} if ko else \
            {"outcome": "completed"}
        await store.update(call_id, ended_at=now - 3600 + i + 40, **outcome)
        tagger.on_call_event(CallStarted(call_id, "native", "ko" if ko else "en",
                                         8000 if ko else 16000))
        tagger.on_call_event(CallTagged(call_id, "plan", "gold" if i % 2 else "basic"))
    tagger.on_call_event(CallTagged("en-0", "Bad Key", "x"))  # dropped: not an identifier
    await desk.add_feedback(Feedback("en-1", "sam", "transcript_wrong", 0, "where is my order",
                                     "where is my border"))
    await tagger.close()
    await desk.close()
    await store.close()


async def test_sqlite_source_reads_what_the_stores_wrote(tmp_path):
    path = str(tmp_path / "calls.db")
    now = time.time()
    await _seed(path, now)
    calls = await SqlCallSource(path).calls(now - DAY, now)
    assert len(calls) == 16
    en1 = next(c for c in calls if c.call_id == "en-1")
    assert en1.reviewed and en1.turns[0].correction == "where is my border"
    assert en1.labels == {"line": "wideband", "plan": "gold"}
    assert next(c for c in calls if c.call_id == "en-0").labels == {"line": "wideband", "plan": "basic"}
    report = await build_report(SqlCallSource(path), now - DAY, now, intent_of=intent_of)
    assert report["kpis"]["wer"] == 0.25 and report["kpis"]["reviewed_calls"] == 1
    assert report["kpis"]["intent_accuracy"] == 0.0  # "my border" means nothing: order missed
    assert await build_report(StaticCallSource([]), now - DAY, now)  # an empty window is fine


async def test_labels_go_with_their_erased_calls(tmp_path):
    path = str(tmp_path / "calls.db")
    await _seed(path, time.time())
    store, tags = SqlCallStore(path), TagStore(path)
    await store.open()
    await tags.open()
    erased = await store.erase_caller("+15550001")  # calls 1, 6, 11
    assert sorted(erased) == ["en-1", "en-6", "ko-11"]
    left = await tags.rows("SELECT DISTINCT call_id FROM call_tags")
    assert len(left) == 13 and not {r["call_id"] for r in left} & set(erased)
    await tags.close()
    await store.close()


def test_report_command_json_table_and_html(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "calls.db")
    asyncio.run(_seed(path, time.time()))
    monkeypatch.setenv("VOICEBOT_DB", path)
    assert main(["report", "--since", "1d", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kpis"]["calls"] == 16 and report["kpis"]["containment"] == 0.5
    flags = {(f["dimension"], f["group"], f["kpi"]) for f in report["fairness"]["flags"]}
    assert ("language", "ko", "containment") in flags and ("line", "narrowband", "understood") in flags
    assert "+1555" not in json.dumps(report)  # counts, never numbers

    assert main(["report", "--since", "1d"]) == 0
    table = capsys.readouterr().out
    assert "containment (no person needed)" in table and "FLAGGED" in table

    out = tmp_path / "report.html"
    assert main(["report", "--since", "1d", "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<svg") >= 5 and "<script" not in page
    assert "language = ko: containment" in page

    assert main(["report", "--since", "yesterday-ish"]) == 2
    assert "not a time" in capsys.readouterr().err
    monkeypatch.setenv("VOICEBOT_DB", str(tmp_path / "none.db"))
    assert main(["report"]) == 2
    assert "no call database" in capsys.readouterr().err
    monkeypatch.setenv("VOICEBOT_DB", "postgresql://reporter:secret@db.invalid/voicebot")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the call database postgresql://reporter:***@db.invalid/voicebot" in err
    assert "secret" not in err
    assert render(report, "json").startswith("{")


async def test_sealed_utterances_are_opened_by_the_reveal_hook(tmp_path):
    path = str(tmp_path / "calls.db")
    store = SqlCallStore(path)
    await store.open()
    await store.create(CallRecord("c1", "native", started_at=T0))
    await store.add_utterance("c1", T0, Utterance("sealed:agent please", 0.8, 1.0, 2.0))
    await store.close()

    def reveal(item: dict) -> dict:
        return {**item, "text": item["text"].removeprefix("sealed:")}
    calls = await SqlCallSource(path, reveal=reveal).calls(T0 - 1, T0 + 1)
    assert calls[0].turns == (Turn("agent please", 0.8, None),)
