"""What is left in the clear at rest after a full fixture run.

Starts a real `voicebot serve` (fresh database, journal and generated key in a
temporary directory), replays every English fixture with `voicebot replay` over
both protocols (caller +15550123, as the replay tool sends), then searches the
raw bytes of the database, its WAL and the journal for the caller's number (in
four spellings), every fixture's spoken sentences, and every word of 4+ letters
the callers said, except words that are also labels stored in the clear
(field names, prompt and intent names, handoff reasons, the disclosure text,
the database schema's own text), which are listed. Hits are whole words.
Prints the count of hits per needle (0 expected).

    .venv/bin/python benchmarks/privacy_grep.py [--speed max] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLER = "+15550123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("server exited during start-up")
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def clear_labels(db: Path) -> set[str]:
    """Words stored in the clear on purpose: field names, handoff reasons, the
    schema's own text, and the labels the database holds in the clear (prompt
    and intent names, outcomes, the disclosure text)."""
    from voicebot.storage.base import CallRecord
    from voicebot.types import HandoffReason

    labels = [*CallRecord.__dataclass_fields__, *(str(r) for r in HandoffReason)]
    with sqlite3.connect(db) as con:
        labels += [sql or "" for (sql,) in con.execute("SELECT sql FROM sqlite_master")]
        labels += [v or "" for row in con.execute(
            "SELECT json_extract(payload, '$.name'), json_extract(payload, '$.intent') "
            "FROM call_events") for v in row]
        labels += [v or "" for row in con.execute(
            "SELECT DISTINCT disclosure_text, outcome, handoff_reason FROM calls") for v in row]
    return {w for label in labels for w in re.findall(r"[a-z']+", label.lower().replace("_", " "))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", default="max")
    parser.add_argument("--concurrency", default="4")
    args = parser.parse_args()
    manifest = json.loads((ROOT / "audio_fixtures" / "manifest.json").read_text())
    english = [e for e in manifest if e["language"] == "en"]
    with tempfile.TemporaryDirectory() as tmp:
        db, journal = Path(tmp) / "data" / "voicebot.db", Path(tmp) / "journal" / "voicebot.journal"
        port = free_port()
        env = {**os.environ, "VOICEBOT_PORT": str(port), "VOICEBOT_DB": str(db),
               "VOICEBOT_JOURNAL": str(journal), "VOICEBOT_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "voicebot", "serve"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            for protocol in ("native", "twilio"):
                done = subprocess.run(
                    [sys.executable, "-m", "voicebot", "replay", "audio_fixtures", "--language", "en",
                     "--url", f"ws://127.0.0.1:{port}", "--protocol", protocol, "--speed", args.speed,
                     "--concurrency", args.concurrency, "--json"],
                    cwd=ROOT, capture_output=True, text=True, check=False)
                outcomes = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
                print(f"{protocol}: {len(outcomes)} calls replayed")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        files = {p.relative_to(tmp).as_posix(): p.read_bytes()
                 for p in Path(tmp).rglob("*") if p.is_file() and not p.name.endswith(".key")}
        clear = clear_labels(db)
    sentences = {t for e in english for t in e["text"]}
    words = {w for s in sentences for w in re.findall(r"[a-z']+", s.lower()) if len(w) >= 4}
    needles = sorted({CALLER, CALLER[1:], CALLER[2:], CALLER[-7:]} | sentences | (words - clear))
    print(f"files: {', '.join(f'{n} ({len(b):,} B)' for n, b in sorted(files.items()))}")
    print(f"needles: {len(needles)} (number x4, {len(sentences)} sentences, "
          f"{len(words - clear)} words); not searched, labels or schema: "
          f"{', '.join(sorted(words & clear))}")
    found: dict[str, list[str]] = {}
    for n in needles:  # whole words only: "even" inside "call_events" is not a hit
        pattern = re.compile(rb"(?<![A-Za-z0-9])" + re.escape(n.encode()) + rb"(?![A-Za-z0-9])")
        for name, data in files.items():
            found.setdefault(n, []).extend(
                f"{name}: {data[max(0, m.start() - 30):m.end() + 30]!r}" for m in pattern.finditer(data))
    found = {n: where for n, where in found.items() if where}
    print(f"hits: {sum(len(w) for w in found.values())}")
    for n, where in found.items():
        print(f"  {n!r}: " + "; ".join(where[:3]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
