"""How long a call waits for its store: none of it, on a database of any speed.

    .venv/bin/python benchmarks/slow_store.py [--calls 5] [--write-s 2.0]

Runs the same scripted calls (a CallSession on fakes: tests/session_kit.py)
over the queued, journalled store twice, in front of a database that answers
at once and one that takes `--write-s` per write, and prints, side by side,
each delay from cause to effect measured from the media channel's timestamps:
the disclosure's first audio after the call starts, the menu after the
disclosure's mark is echoed, the handoff line after the caller's words are
recognised, the transfer after the handoff line's mark. A call that waited
for one write would show `--write-s` in some column.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.session_kit import LINE_RATE, Kit  # noqa: E402
from tests.test_write_queue import measured_call  # noqa: E402
from voicebot.asr.fake import FakeEngine  # noqa: E402
from voicebot.call.fake_channel import FakeChannel  # noqa: E402
from voicebot.storage.fake import FakeCallStore  # noqa: E402
from voicebot.storage.journal import JournalledStore  # noqa: E402
from voicebot.types import Transcript  # noqa: E402


async def run(calls: int, write_s: float, folder: Path) -> dict[str, list[float]]:
    inner = FakeCallStore(delay_s=write_s)
    store = JournalledStore(inner, folder / f"calls-{write_s}.journal", timeout_s=write_s + 3)
    await store.open()
    kit = Kit(ThreadPoolExecutor(max_workers=2))
    delays: dict[str, list[float]] = {}
    try:
        for i in range(calls):
            call = await kit.start_call(
                FakeEngine([Transcript("i want to speak to a person", 0.95)]), store=store,
                channel=FakeChannel(LINE_RATE, marks="keep"), call_id=f"c{i}")
            for name, seconds in (await measured_call(call)).items():
                delays.setdefault(name, []).append(seconds)
    finally:
        await kit.close()
        inner.delay_s = 0.0
        await store.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--write-s", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fast = asyncio.run(run(args.calls, 0.0, Path(tmp)))
        slow = asyncio.run(run(args.calls, args.write_s, Path(tmp)))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.calls} calls per store; "
          f"delays in ms, median / max")
    print(f"| from cause to effect | instant store | {args.write_s:g} s per write |")
    print("|---|---:|---:|")
    for name in fast:
        cells = [f"{statistics.median(d[name]) * 1000:.1f} / {max(d[name]) * 1000:.1f}"
                 for d in (fast, slow)]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    worst = max(max(v) for v in slow.values()) * 1000
    print(f"worst delay with {args.write_s:g} s writes: {worst:.1f} ms "
          f"({'within' if worst <= 50 else 'OVER'} the 50 ms budget)")


if __name__ == "__main__":
    main()
