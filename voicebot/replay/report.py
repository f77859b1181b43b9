"""How replays are shown to an operator: a call log, JSON lines, a summary table."""

from __future__ import annotations

import json
from typing import Any

from voicebot.replay.suite import CaseResult


def call_log(done: CaseResult, speed: float) -> str:
    r = done.result
    lines = [f"== {done.case.path.name}"]
    if r is None:
        return "\n".join(lines + [f"   error: {done.error}"])
    first = f"{r.first_audio_s * 1000:.0f} ms" if r.first_audio_s is not None else "never"
    lines.append(f"   first bot audio after {first}")
    heard = any(name.endswith("-disclosure") for name in r.marks_echoed)
    lines.append(f"   disclosure played to the end: {'yes' if heard else 'NO'}")
    for e in r.events:
        t = f"{e['t']:7.2f}s"
        if e["event"] == "prompt":
            lines.append(f"   {t} bot   [{e['name']}] {e['text']}")
        elif e["event"] == "transcript":
            lines.append(f"   {t} caller \"{e['text']}\" (confidence {e['confidence']:.2f})")
        elif e["event"] == "clear":
            lines.append(f"   {t} barge-in: bot audio cleared")
        elif e["event"] == "handoff":
            lines.append(f"   {t} HANDOFF to {e['target']}: {e['reason']} — {e['summary']}")
    latencies = done.response_latencies(speed)
    if latencies:
        lines.append("   end of speech → bot response: " + ", ".join(f"{x * 1000:.0f} ms" for x in latencies))
    if over := done.over_disclosure(speed):
        lines.append(f"   {over} utterance(s) said over the disclosure, answered once it ended: not timed")
    verdict = "" if done.passed is None else (" PASS" if done.passed else f" FAIL (expected {done.case.expected})")
    lines.append(f"   outcome: {done.outcome}{verdict}")
    return "\n".join(lines)


def json_line(done: CaseResult, speed: float) -> str:
    r = done.result
    payload: dict[str, Any] = {
        "file": str(done.case.path), "call_id": r.call_id if r else None,
        "expected": done.case.expected, "outcome": done.outcome,
        "passed": done.passed, "error": done.error or None, "wer": done.wer,
        "first_audio_ms": None if r is None or r.first_audio_s is None else round(r.first_audio_s * 1000),
        "response_ms": [round(x * 1000) for x in done.response_latencies(speed)],
        "over_disclosure": done.over_disclosure(speed),
        "events": r.events if r else [],
    }
    return json.dumps(payload, ensure_ascii=False)


def summary_table(results: list[CaseResult], speed: float) -> str:
    header = f"{'fixture':<36} {'expected':<24} {'got':<24} {'verdict':<7} {'WER':>5} {'1st audio':>9} {'response':>9}"
    rows = [header, "-" * len(header)]
    for done in results:
        wer = "" if done.wer is None else f"{done.wer:.2f}"
        r = done.result
        first = "" if r is None or r.first_audio_s is None else f"{r.first_audio_s * 1000:.0f} ms"
        lat = done.response_latencies(speed)
        resp = f"{max(lat) * 1000:.0f} ms" if lat else ""
        verdict = {None: "-", True: "pass", False: "FAIL"}[done.passed]
        rows.append(f"{done.case.path.name:<36} {done.case.expected or '-':<24} {done.outcome:<24} "
                    f"{verdict:<7} {wer:>5} {first:>9} {resp:>9}")
    over = sum(d.over_disclosure(speed) for d in results)
    if over:
        rows.append(f"response: not timed for {over} utterance(s) said over the disclosure (answered once it ended)")
    judged = [d for d in results if d.passed is not None]
    failed = [d for d in judged if not d.passed]
    rows.append(f"{len(judged) - len(failed)}/{len(judged)} fixtures passed" if judged else "no expectations given")
    wers = [d.wer for d in results if d.wer is not None]
    if wers:
        rows.append(f"mean WER {sum(wers) / len(wers):.2f} over {len(wers)} files with a reference text"
                    " (Korean: character error rate)")
    return "\n".join(rows)


def progress_line(finished: int, total: int, done: CaseResult, width: int = 24) -> str:
    """`[#####.....] 3/10 name: outcome verdict` for the operator's terminal."""
    filled = width * finished // max(total, 1)
    verdict = {None: "", True: " pass", False: " FAIL"}[done.passed]
    return (f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{total} "
            f"{done.case.path.name}: {done.outcome}{verdict}")
