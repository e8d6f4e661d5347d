"""core.waiting.Wait: the deadline, the progress cadence and sleeps clipped at the deadline,
on a fake clock."""

from __future__ import annotations

from upgrader.core.waiting import Wait, poll_intervals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_first_line_after_5s_then_every_progress_every_each_with_the_time_left() -> None:
    clock = Clock()
    said: list[str] = []
    wait = Wait(60, clock=clock, sleep=clock.sleep, on_progress=said.append, progress_every=20)
    times = []
    while clock.now < wait.deadline:
        now = wait.now()
        if wait.due(now):
            wait.say("waiting for x", now)
            times.append(now - 100)
        wait.nap(1.0, now)
    assert times == [5.0, 25.0, 45.0]
    assert said[0] == "waiting for x; 55s of 60s left"


def test_a_nap_never_ends_past_the_deadline_and_nobody_listening_is_never_due() -> None:
    clock = Clock()
    wait = Wait(3, clock=clock, sleep=clock.sleep)
    wait.nap(10, wait.now())
    assert clock.slept == [3.0]
    assert wait.left() == 0.0
    assert not wait.due(wait.now())


def test_poll_gaps_start_fast_and_double_up_to_the_interval() -> None:
    gaps = poll_intervals(2.0)
    assert [next(gaps) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
