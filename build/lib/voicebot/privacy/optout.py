"""Which requests for a person are also an opt-out from the automated assistant.

"Agent please" asks for a person now; "I don't want to talk to a robot" refuses
the machine, and is remembered (by pseudonym) so the caller's next call goes to
a person right after the disclosure. A request for a person whose words name the
machine or ask for someone *real* is an opt-out; the markers are per language.
"""

from __future__ import annotations

import re

MARKERS = {
    # not "computer" or "machine": callers call about theirs ("my computer is broken")
    "en": ("robot", "robots", "bot", "bots", "automated", "real"),
    "ko": ("기계", "로봇", "자동", "컴퓨터"),
}


def says_opt_out(text: str, language: str) -> bool:
    words = set(re.findall(r"\w+", text.lower()))
    markers = MARKERS.get(language, ())
    if language == "ko":  # no spaces between particles: look inside words
        return any(m in text for m in markers)
    return not words.isdisjoint(markers)
