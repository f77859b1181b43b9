#!/usr/bin/env python3
"""Regenerate the turn-taking fixtures in ``audio_fixtures/turns/``.

Callers who pause inside a sentence, callers who talk on after a short pause
once they have already said a whole request, and short whole answers ("yes",
"operator"): the cases adaptive end of turn must get right. Made with the
espeak-ng voices and the telephone chain of ``scripts/make_fixtures.py``
(imported from it: same band-pass, levels, noise floor and mu-law round
trip), written with their own ``manifest.json`` in the same format. Every
interval of `speech` belongs to one caller turn: the turn ends at the end of
the last one.

    .venv/bin/python scripts/make_turn_fixtures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_fixtures import LEAD, Fixture, Say, render, write_wav  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "audio_fixtures" / "turns"


def turn(file: str, expected: str, parts: list[Say], pauses: list[float], notes: str) -> Fixture:
    """One caller turn: `parts` spoken with `pauses` (s) of silence between them."""
    from make_fixtures import render_utterance

    starts, at = [], LEAD
    for i, part in enumerate(parts):
        starts.append(round(at, 3))
        at += len(render_utterance(part)) / 8000 + (pauses[i] if i < len(pauses) else 0.0)
    return Fixture(file, expected, parts, starts, notes=notes)


def fixtures() -> list[Fixture]:
    us, rp, f1, scot = "en-us", "en-gb-x-rp", "en-us+f1", "en-gb-scotland"
    mid = "Pauses {p} ms mid-sentence (before the pause is not a whole request)."
    on = "Talks on {p} ms after already saying a whole request."
    return [
        turn("mid_speak_person.wav", "handoff:caller_request",
             [Say("i want to speak", us), Say("to a person", us, transcript="to a person")], [0.6],
             mid.format(p=600)),
        turn("mid_reset_password.wav", "completed",
             [Say("i need to reset", f1, 150), Say("my password", f1, 150)], [0.55], mid.format(p=550)),
        turn("mid_where_order.wav", "completed",
             [Say("where is", rp, 160), Say("my order", rp, 160)], [0.45], mid.format(p=450)),
        turn("mid_talk_human.wav", "handoff:caller_request",
             [Say("can i talk to", scot, 160), Say("a human", scot, 160)], [0.7], mid.format(p=700)),
        turn("mid_track_package.wav", "completed",
             [Say("i want to track", us, 165), Say("my package", us, 165)], [0.5], mid.format(p=500)),
        turn("on_agent_please.wav", "handoff:caller_request",
             [Say("agent", rp, 150), Say("please", rp, 150)], [0.3], on.format(p=300)),
        turn("on_order_yesterday.wav", "completed",
             [Say("where is my order", us, 165), Say("it was due yesterday", us, 165)], [0.35],
             on.format(p=350)),
        turn("on_person_now.wav", "handoff:caller_request",
             [Say("i want to speak to a person", f1, 165), Say("right now", f1, 165)], [0.25],
             on.format(p=250)),
        turn("short_operator.wav", "handoff:caller_request", [Say("operator", us, 165)], [],
             "A whole request in one word."),
        turn("short_yes.wav", "completed", [Say("yes", us, 165)], [], "A whole yes."),
    ]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for fx in fixtures():
        pcm, entry = render(fx)
        write_wav(OUT / fx.file, pcm)
        manifest.append(entry)
        print(f"{fx.file:28s} {len(pcm) / 8000:5.2f} s  speech {entry['speech']}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
