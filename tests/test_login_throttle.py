"""The staff log-in throttle per source address (unit tests with a controlled
clock; through the real server in tests/security/test_staff_hardening.py)."""

from voicebot.staff.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_free_misses_then_a_wait_that_doubles_up_to_the_cap():
    clock = Clock()
    throttle = LoginThrottle(free=5, base_s=1, max_s=8, forget_s=900, clock=clock)
    for _ in range(4):
        throttle.failed("10.0.0.1")
        assert throttle.retry_after("10.0.0.1") == 0
    waits = []
    for _ in range(6):
        throttle.failed("10.0.0.1")
        waits.append(throttle.retry_after("10.0.0.1"))
        clock.now += waits[-1]  # the source waits as told, then misses again
    assert waits == [1, 2, 4, 8, 8, 8]
    assert throttle.retry_after("10.0.0.2") == 0  # another source is never slowed


def test_misses_are_forgotten_after_a_quiet_spell_and_the_table_stays_bounded():
    clock = Clock()
    throttle = LoginThrottle(free=2, base_s=1, forget_s=900, max_sources=100, clock=clock)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") > 0
    clock.now += 900
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # counting starts again
    assert throttle.retry_after("10.0.0.1") == 0
    for i in range(10_000):
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
        clock.now += 1  # one miss a second from ever new addresses
    assert len(throttle) <= 100  # however many sources miss within forget_s
    flood = LoginThrottle(free=2, base_s=1, forget_s=900, max_sources=100, clock=clock)
    for _ in range(3):
        flood.failed("10.0.0.1")
    for i in range(30):
        flood.failed(f"10.2.0.{i}")
    assert flood.retry_after("10.0.0.1") > 0  # under the cap nothing is dropped
