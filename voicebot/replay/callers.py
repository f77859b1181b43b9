"""Caller numbers for tools that place many calls (replay suites, benchmarks).

Each call gets its own number: the server remembers an opt-out from the
automated assistant per caller, so calls that share one number steer each
other (after one "not a robot", every later call goes straight to a person).
"""

from __future__ import annotations


def caller_number(index: int, prefix: str = "+1555") -> str:
    """The `index`-th distinct caller number under `prefix` (E.164-shaped)."""
    return f"{prefix}{index:07d}"
