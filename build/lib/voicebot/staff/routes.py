"""Staff API for the floor: the transfer queue, calls, claims, dispositions,
feedback on the bot, reports and the live feed.

Every handler authenticates first (401/403 before anything is looked up), and
a call an agent may not see answers 404 exactly like a call that does not
exist. Every read of a transcript is audited.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from aiohttp import web

from voicebot.assist.advice import assist_for
from voicebot.staff.auth import Principal
from voicebot.staff.service import StaffDesk
from voicebot.storage.base import CallRecord, CallStore
from voicebot.storage.desk import CALL_FILTERS, Feedback

DISPOSITIONS = ("resolved", "follow_up", "escalated", "caller_hung_up", "wrong_department",
                "other")
FEEDBACK_KINDS = ("transcript_wrong", "should_not_have_transferred", "wrong_reason",
                  "good_handoff", "reviewed_ok", "other")  # reviewed_ok: read, transcript right
FEEDBACK_COLUMNS = ("seq", "at", "call_id", "user", "kind", "utterance", "heard", "correction",
                    "comment", "language", "handoff_reason", "outcome")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": "no such call"}),
                            content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """Only `Content-Type: application/json`: a cross-site form can send text/plain
    or form bodies without a CORS preflight (login CSRF), never JSON."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": "send the body as Content-Type: application/json"}),
            content_type="application/json")
    return parse_json_object(await request.text())


def parse_json_object(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except RecursionError:
        raise bad_request("body is nested too deeply") from None
    except ValueError as exc:  # also integers longer than Python converts (4300 digits)
        raise bad_request(f"body is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


class DeskRoutes:
    def __init__(self, desk: StaffDesk, calls: CallStore) -> None:
        self.d = desk
        self.calls = calls

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/feed", self.feed)
        router.add_get("/api/transfers", self.transfers)
        router.add_post("/api/transfers/{call_id}/claim", self.claim)
        router.add_get("/api/calls", self.list_calls)
        router.add_get("/api/calls/{call_id}", self.get_call)
        router.add_post("/api/calls/{call_id}/disposition", self.disposition)
        router.add_post("/api/calls/{call_id}/feedback", self.feedback)
        router.add_get("/api/feedback", self.export_feedback)
        router.add_get("/api/reports/handoffs", self.handoff_report)

    async def _visible(
        self, who: Principal, call_id: str,
    ) -> tuple[CallRecord, dict[str, Any] | None]:
        """The call and its transfer, if `who` may see it; 404 otherwise."""
        record = await self.calls.get(call_id)
        if record is None:
            raise not_found()
        transfer = await self.d.desk.transfer(record.call_id)
        if who.at_least("supervisor"):
            return record, transfer
        if transfer is None or not (transfer["status"] in ("waiting", "callback")
                                    or transfer["claimed_by"] == who.name):
            raise not_found()
        return record, transfer

    async def feed(self, request: web.Request) -> web.StreamResponse:
        await self.d.auth.require(request, "agent")
        return await self.d.feed.stream(request)

    async def transfers(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        return json_response({"transfers": await self.d.desk.queue(who.name), "now": time.time()})

    async def claim(self, request: web.Request) -> web.Response:
        """Agents race for a waiting transfer. A call an agent may not see (someone
        else's, also the moment another agent won the race) is a 404, as for GET;
        a supervisor, who sees every call, learns who holds it."""
        who = await self.d.auth.require(request, "agent")
        record, transfer = await self._visible(who, request.match_info["call_id"])
        if transfer is None:
            raise not_found()
        if transfer["claimed_by"] == who.name:
            return json_response({"transfer": transfer})
        if not await self.d.desk.claim(record.call_id, who.name):
            current = await self.d.desk.transfer(record.call_id) or transfer
            if not who.at_least("supervisor") and current["claimed_by"] != who.name:
                raise not_found()
            return json_response({"error": f"transfer is {current['status']}",
                                  "claimed_by": current["claimed_by"]}, status=409)
        await self.d.staff.audit(who.name, who.role, "claim", record.call_id)
        self.d.publish_update(record.call_id, "claimed", claimed_by=who.name)
        return json_response({"transfer": await self.d.desk.transfer(record.call_id)})

    async def list_calls(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        q = request.query
        filters: dict[str, Any] = {}
        for key in CALL_FILTERS:
            if q.get(key):
                filters[key] = _number(key, q[key]) if key in ("since", "until") else q[key]
        limit = min(_count("limit", q.get("limit", "100")), 500)
        offset = _count("offset", q.get("offset", "0"))
        scope = None if who.at_least("supervisor") else who.name
        rows = await self.d.desk.list_calls(filters, visible_to=scope, limit=limit, offset=offset)
        return json_response({"calls": rows})

    async def get_call(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        record, transfer = await self._visible(who, request.match_info["call_id"])
        await self.d.staff.audit(who.name, who.role, "read_transcript", record.call_id)
        if transfer is not None and not record.handoff_reason:
            # still playing the handoff line: the call row gets these once it has played
            record.handoff_reason, record.summary = transfer["reason"], transfer["summary"]
        return json_response({
            **record.to_json(), "transfer": transfer,
            "assist": assist_for(record, self.d.kb).to_json(),
            "word_confidence_threshold": self.d.settings.confidence_threshold})

    async def disposition(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        record, transfer = await self._visible(who, request.match_info["call_id"])
        body = await json_body(request)
        value, notes = body.get("disposition"), str(body.get("notes", ""))[:2000]
        if value not in DISPOSITIONS:
            raise bad_request(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        if transfer is None:
            raise bad_request("this call was not handed to a person")
        if transfer["claimed_by"] != who.name and not who.at_least("supervisor"):
            raise web.HTTPForbidden(text=json.dumps({"error": "claim the call first"}),
                                    content_type="application/json")
        if not await self.d.desk.dispose(record.call_id, value, notes):
            return json_response({"error": f"transfer is {transfer['status']}"}, status=409)
        await self.d.staff.audit(who.name, who.role, "disposition", record.call_id, value)
        self.d.publish_update(record.call_id, "closed", disposition=value)
        self.d.notify_crm("transfer.closed", record.call_id,
                          {"disposition": value, "agent": who.name, "at": time.time()})
        return json_response({"transfer": await self.d.desk.transfer(record.call_id)})

    async def feedback(self, request: web.Request) -> web.Response:
        who = await self.d.auth.require(request, "agent")
        record, _ = await self._visible(who, request.match_info["call_id"])
        body = await json_body(request)
        kind = body.get("kind")
        if kind not in FEEDBACK_KINDS:
            raise bad_request(f"kind must be one of {', '.join(FEEDBACK_KINDS)}")
        index, heard = body.get("utterance"), ""
        if index is not None:
            if not isinstance(index, int) or not 0 <= index < len(record.utterances):
                raise bad_request("utterance must index the call's transcript")
            heard = record.utterances[index]["text"]
        elif kind == "transcript_wrong":
            raise bad_request("say which utterance was wrong")
        f = Feedback(record.call_id, who.name, kind, index, heard,
                     str(body.get("correction", ""))[:500], str(body.get("comment", ""))[:2000])
        seq = await self.d.desk.add_feedback(f)
        return json_response({"feedback": seq}, status=201)

    async def export_feedback(self, request: web.Request) -> web.StreamResponse:
        who = await self.d.auth.require(request, "supervisor")
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise bad_request("format must be jsonl or csv")
        since = _number("since", request.query.get("since", "0"))
        rows = await self.d.desk.feedback(since)
        await self.d.staff.audit(who.name, who.role, "export_feedback", "", f"{len(rows)} rows")
        name = f"voicebot-feedback.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "jsonl":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            return web.Response(text=text, content_type="application/x-ndjson", headers=headers)
        out = io.StringIO()
        writer = csv.DictWriter(out, FEEDBACK_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_safe(r) for r in rows)
        return web.Response(text=out.getvalue(), content_type="text/csv", headers=headers)

    async def handoff_report(self, request: web.Request) -> web.Response:
        await self.d.auth.require(request, "supervisor")
        now = time.time()
        since = _number("since", request.query.get("since", str(now - 86400)))
        until = _number("until", request.query.get("until", str(now + 1)))
        return json_response({
            "since": since, "until": until,
            "reasons": await self.d.desk.handoff_reasons(since, until),
            "outcomes": await self.d.desk.outcomes(since, until)})


def _number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise bad_request(f"{key} must be a number") from None
    if not 0 <= number < float("inf"):
        raise bad_request(f"{key} must be a non-negative number")
    return number


MAX_COUNT = 10**9  # far beyond any table here, well inside SQLite's integers


def _count(key: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > MAX_COUNT:
        raise bad_request(f"{key} must be a whole number from 0 to {MAX_COUNT}")
    return int(value)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(row: dict[str, Any]) -> dict[str, Any]:
    """A text cell a spreadsheet would run as a formula gets a leading `'`
    (OWASP's CSV injection advice); numbers stay numbers."""
    return {k: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            for k, v in row.items()}
