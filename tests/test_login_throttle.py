"""The staff log-in lockout (unit tests with a controlled clock; the real log-in
route is exercised in test_staff_api.py)."""

from voicebot.staff.admin import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_misses_lock_the_name_for_the_window_and_each_later_miss_again():
    clock = Clock()
    throttle = LoginThrottle(limit=5, window_s=60, clock=clock)
    for _ in range(4):
        throttle.failed("bob")
    assert not throttle.locked("bob")
    throttle.failed("bob")
    assert throttle.locked("bob") and not throttle.locked("ann")
    clock.now += 61
    assert not throttle.locked("bob")
    throttle.failed("bob")  # still in a row: locked again at once
    assert throttle.locked("bob")
    throttle.succeeded("bob")
    assert not throttle.locked("bob")


def test_guesses_at_made_up_names_do_not_grow_the_table_without_bound():
    clock = Clock()
    throttle = LoginThrottle(limit=5, window_s=60, max_names=100, clock=clock)
    for _ in range(5):
        throttle.failed("bob")
    for i in range(10_000):
        throttle.failed(f"made-up-{i}")
        clock.now += 0.1  # 10 guesses a second
    assert len(throttle) <= 100 + 600  # at most the names of the last window
    assert throttle.locked("made-up-9999") is False  # one miss locks nothing
    clock2 = Clock()
    recent = LoginThrottle(limit=5, window_s=60, max_names=100, clock=clock2)
    for _ in range(5):
        recent.failed("bob")
    for i in range(500):
        recent.failed(f"made-up-{i}")  # a burst within the window
    assert recent.locked("bob")  # a live lock is never dropped to make room
