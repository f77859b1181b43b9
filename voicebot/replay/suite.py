"""Operator runs: recordings (optionally described by a manifest) replayed
against a running server, with verdicts, latencies and word error rates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.audio.wav import read_wav
from voicebot.dialog.lang import normalise
from voicebot.replay.callers import caller_number
from voicebot.replay.client import ReplayOptions, ReplayResult, replay


@dataclass
class Case:
    path: Path
    expected: str | None = None  # e.g. "handoff:caller_request"; None = no verdict
    language: str = ""  # the bot language the manifest runs it against; "" = any
    text: list[str] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    hangup_at: float | None = None


@dataclass
class CaseResult:
    case: Case
    result: ReplayResult | None
    error: str = ""

    @property
    def outcome(self) -> str:
        return self.result.outcome if self.result else "error"

    @property
    def passed(self) -> bool | None:
        if self.case.expected is None:
            return None
        return self.outcome == self.case.expected

    @property
    def transcripts(self) -> list[dict[str, Any]]:
        return self.result.of("transcript") if self.result else []

    @property
    def wer(self) -> float | None:
        if not self.case.text or self.result is None:
            return None
        return error_rate(" ".join(self.case.text), " ".join(t["text"] for t in self.transcripts),
                          self.case.language)

    def response_latencies(self, speed: float) -> list[float]:
        """Seconds from the end of each caller utterance (from the manifest, else as
        the server's transcripts place it) to the bot's next prompt or handoff; not
        for those said over the disclosure (`over_disclosure`)."""
        if self.result is None or not speed:
            return []
        replies = [e["t"] for e in self.result.events if e["event"] in ("prompt", "handoff")]
        out = []
        for spoken_end in self._spoken_ends(speed, over_disclosure=False):
            after = [t for t in replies if t >= spoken_end]
            if after:
                out.append(after[0] - spoken_end)
        return out

    def over_disclosure(self, speed: float) -> int:
        """Utterances that ended while the disclosure played: it cannot be interrupted,
        so they are answered once it ends, and that wait is not the bot's response
        time (the server's voicebot_response_seconds leaves them out too)."""
        if self.result is None or not speed:
            return 0
        return len(self._spoken_ends(speed, over_disclosure=True))

    def _spoken_ends(self, speed: float, over_disclosure: bool) -> list[float]:
        """When each utterance ended, in the call's seconds: those that ended while the
        disclosure played, or the others."""
        events = self.result.events if self.result else []
        began = next((e["t"] for e in events if e["event"] == "prompt" and e.get("name") == "disclosure"),
                     float("inf"))
        ended = next((e["t"] for e in events if e["event"] == "played"
                      and str(e.get("name", "")).endswith("-disclosure")), float("inf"))
        ends = [end / speed for end in [end for _, end in self.case.speech] or [t["end"] for t in self.transcripts]]
        return [end for end in ends if (began <= end < ended) == over_disclosure]


def load_cases(paths: list[Path], manifest: Path | None) -> list[Case]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.wav"))
            if manifest is None and (path / "manifest.json").exists():
                manifest = path / "manifest.json"
        else:
            files.append(path)
    described = _read_manifest(manifest) if manifest else {}
    return [_with_path(described[f.name], f) if f.name in described else Case(f) for f in files]


def _with_path(case: Case, path: Path) -> Case:
    case.path = path
    return case


def _read_manifest(path: Path) -> dict[str, Case]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {
        e["file"]: Case(
            path=path.parent / e["file"], expected=e.get("expected"), language=e.get("language", ""),
            text=list(e.get("text", [])),
            speech=[(float(a), float(b)) for a, b in e.get("speech", [])],
            dtmf=[(float(d["at"]), str(d["digit"])) for d in e.get("dtmf", [])],
            hangup_at=e.get("hangup_at"),
        )
        for e in entries
    }


async def run_cases(
    cases: list[Case], url: str, base: ReplayOptions, concurrency: int = 1,
    on_done: Callable[[CaseResult], None] | None = None, arrival_gap_s: float = 0.0,
) -> list[CaseResult]:
    """Replay every case, at most `concurrency` at once, the i-th call starting no
    earlier than i * arrival_gap_s after the first."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(index: int, case: Case) -> CaseResult:
        await asyncio.sleep(index * arrival_gap_s)
        async with gate:
            # a caller who wanted a person says yes when asked; anyone else says no
            confirm = ("yes" if case.expected in (None, "handoff:caller_request") else "no")
            # each recording is its own caller: what one caller asked for (an opt-out
            # from the assistant is remembered per caller) must not steer the next
            caller = caller_number(index, base.caller) if base.caller else ""
            options = ReplayOptions(**{**base.__dict__, "dtmf": case.dtmf, "hangup_at": case.hangup_at,
                                       "confirm": confirm, "caller": caller})
            try:
                samples, rate = read_wav(case.path)
                done = CaseResult(case, await replay(url, samples, rate, options))
            except (OSError, ValueError, EOFError) as exc:
                done = CaseResult(case, None, f"{type(exc).__name__}: {exc}")
        if on_done is not None:
            on_done(done)
        return done

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(cases))))


def error_rate(reference: str, hypothesis: str, language: str = "") -> float:
    """Word error rate; for Korean the character error rate over non-space
    characters, since Korean spacing varies (the Vosk model writes 비밀번호를 as
    "비밀번호 를", which is right but would count as two word errors)."""
    if language == "ko":
        return word_error_rate(" ".join(normalise(reference).replace(" ", "")),
                               " ".join(normalise(hypothesis).replace(" ", "")))
    return word_error_rate(reference, hypothesis)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)
