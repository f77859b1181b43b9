"""Log-in throttling per source address, never per account.

A lock per name let anyone lock a known user out, and guesses spread over
many names never locked at all. Instead each source address (an IPv6 address
counts by its /64) gets `free` misses; after that it must wait before its next
attempt, twice as long after each further miss, up to `max_s`. Nobody's
account is ever locked, so no one can lock out someone at another address.
A successful log-in does not clear the count (else an attacker with an
account of their own could reset it between guesses); misses are forgotten
`forget_s` after the last one.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import web

FREE_MISSES, BASE_S, MAX_S, FORGET_S = 10, 1.0, 60.0, 900.0
MAX_SOURCES = 4096  # beyond this, sources whose misses are forgotten are dropped


class LoginThrottle:
    def __init__(self, free: int = FREE_MISSES, base_s: float = BASE_S, max_s: float = MAX_S,
                 forget_s: float = FORGET_S, max_sources: int = MAX_SOURCES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base_s, self.max_s, self.forget_s = free, base_s, max_s, forget_s
        self.max_sources, self._clock = max_sources, clock
        self._misses: dict[str, tuple[int, float]] = {}  # source -> (misses, last miss)

    def __len__(self) -> int:
        return len(self._misses)

    def wait_after(self, misses: int) -> float:
        if misses < self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(misses - self.free, 32))

    def retry_after(self, source: str) -> float:
        """Seconds this source must still wait before its next attempt (0: go ahead)."""
        misses, last = self._misses.get(source, (0, 0.0))
        now = self._clock()
        if now - last >= self.forget_s:
            return 0.0
        return max(0.0, last + self.wait_after(misses) - now)

    def failed(self, source: str) -> None:
        now = self._clock()
        misses, last = self._misses.get(source, (0, 0.0))
        self._misses[source] = (misses + 1 if now - last < self.forget_s else 1, now)
        if len(self._misses) > self.max_sources:
            live = {s: m for s, m in self._misses.items() if now - m[1] < self.forget_s}
            if len(live) > self.max_sources:  # a flood from ever new addresses: keep the latest
                latest = sorted(live.items(), key=lambda item: item[1][1])
                live = dict(latest[-self.max_sources // 2:])
            self._misses = live


class Throttle(Protocol):
    """What the log-in route asks: this worker's (`PerWorker`) or every worker's
    (`voicebot.staff.shared.SharedThrottle`) count of a source's misses."""

    async def retry_after(self, source: str) -> float: ...
    async def failed(self, source: str) -> None: ...


class PerWorker:
    def __init__(self, throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle if throttle is not None else LoginThrottle()

    async def retry_after(self, source: str) -> float:
        return self.throttle.retry_after(source)

    async def failed(self, source: str) -> None:
        self.throttle.failed(source)


def parse_proxies(setting: Iterable[str]) -> frozenset[str]:
    """VOICEBOT_TRUSTED_PROXIES: addresses; ValueError names a bad one."""
    return frozenset(str(ipaddress.ip_address(e.strip())) for e in setting)


def client_address(request: web.Request, trusted_proxies: Iterable[str]) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the address it
    appended last to X-Forwarded-For. IPv6 addresses are reduced to their /64."""
    address = request.remote or ""
    if address in trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        address = forwarded or address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def forwarded_https(request: web.Request, trusted_proxies: Iterable[str]) -> bool:
    return (request.remote is not None and request.remote in trusted_proxies
            and request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https")
