"""The journal file: one JSON line per write, appended and fsynced, replayed from
a saved position. Every function here blocks: callers run them on a thread."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("voicebot.storage.journal")
Entry = dict[str, Any]


def append(path: Path, entries: list[Entry]) -> None:
    """Append `entries` in order with one fsync (a queue spilled at once is one write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # owner-only
    with open(fd, "a", encoding="utf-8") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())

def read_entries(path: Path, pos_path: Path) -> tuple[list[tuple[Entry, int]], int]:
    """Entries after the saved position, each with the byte offset just past it.
    A torn last line (crash while appending) is ignored: it was never acknowledged."""
    start = load_pos(pos_path)
    entries: list[tuple[Entry, int]] = []
    if not path.exists():
        return entries, start
    with open(path, "rb") as f:
        f.seek(start)
        offset = start
        for raw in f:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                entries.append((json.loads(raw), offset))
            except ValueError:  # a damaged line cannot be replayed; keep going
                log.error("journal %s: unreadable entry at byte %d skipped", path, offset - len(raw))
    return entries, start


def count_entries(path: Path, pos_path: Path) -> int:
    return len(read_entries(path, pos_path)[0])


def load_pos(pos_path: Path) -> int:
    try:
        return int(pos_path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def save_pos(pos_path: Path, offset: int) -> None:
    tmp = pos_path.with_name(pos_path.name + ".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, pos_path)


def remove(path: Path, pos_path: Path) -> None:
    for p in (path, pos_path):
        p.unlink(missing_ok=True)
