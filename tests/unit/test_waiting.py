"""core.waiting: the one poll (``poll_until``: capped exponential gaps, the deadline, the
progress cadence, naps clipped at the deadline or not taken) and the backoff shape the API
retries share, on a fake clock. The retry policy of every wait is tested here, once."""

from __future__ import annotations

import pytest
import tenacity
from fake_clock import FakeClock

from upgrader.core.waiting import Wait, backoff, poll_until


def test_first_line_after_5s_then_every_progress_every_each_with_the_time_left() -> None:
    clock = FakeClock(100.0)
    said: list[str] = []
    times: list[float] = []
    wait = Wait(60, clock=clock, sleep=clock.sleep, on_progress=said.append, progress_every=20)

    def progress(_: None) -> str:
        times.append(clock.now - 100)
        return "waiting for x"

    polled = poll_until(
        lambda: None, lambda _: False, wait=wait, first=1.0, cap=1.0, progress=progress
    )
    assert times == [5.0, 25.0, 45.0]
    assert said[0] == "waiting for x; 55s of 60s left"
    assert not polled.done and polled.attempts == 61 and clock.now == wait.deadline


def test_a_nap_never_ends_past_the_deadline_and_nobody_listening_is_never_due() -> None:
    clock = FakeClock(100.0)
    wait = Wait(3, clock=clock, sleep=clock.sleep)
    polled = poll_until(lambda: "no", lambda r: r == "yes", wait=wait, first=10, cap=10)
    assert clock.sleeps == [3.0]  # clipped: the last attempt is at the deadline
    assert polled.attempts == 2 and polled.result == "no" and not polled.done
    assert wait.left() == 0.0
    assert not wait.due(wait.now())


def test_poll_gaps_start_fast_and_double_up_to_the_interval() -> None:
    clock = FakeClock(100.0)
    answers = iter([False] * 6 + [True])
    wait = Wait(60, clock=clock, sleep=clock.sleep)
    polled = poll_until(lambda: next(answers), bool, wait=wait, first=0.25, cap=2.0)
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert polled.done and polled.result is True and polled.attempts == 7


def test_whole_naps_end_the_poll_instead_of_a_nap_cut_short() -> None:
    clock = FakeClock(100.0)
    wait = Wait(5, clock=clock, sleep=clock.sleep)
    polled = poll_until(lambda: 0, bool, wait=wait, first=2.0, cap=2.0, whole_naps=True)
    assert clock.sleeps == [2.0, 2.0]  # a third nap would end at 6 s, past the 5 s deadline
    assert polled.attempts == 3 and not polled.done


def test_a_chosen_gap_replaces_the_backoff_and_errors_are_the_callers() -> None:
    clock = FakeClock(100.0)
    results = iter(["pass", "fail", "fail", "ok"])
    wait = Wait(60, clock=clock, sleep=clock.sleep)
    polled = poll_until(
        lambda: next(results),
        lambda r: r == "ok",
        wait=wait,
        first=0.5,
        cap=4.0,
        gap=lambda r, backoff_gap: 4.0 if r == "pass" else backoff_gap,
    )
    assert clock.sleeps == [4.0, 1.0, 2.0] and polled.done  # attempt 2 and 3's backoff

    def broken() -> bool:
        raise ValueError("not a poll's business")

    with pytest.raises(ValueError, match="not a poll's business"):
        poll_until(broken, bool, wait=Wait(60, clock=clock, sleep=clock.sleep), first=1, cap=1)


def test_the_backoff_of_the_api_retries_doubles_up_to_its_cap() -> None:
    grow = backoff(0.25, 8.0)
    gaps = []
    for n in range(1, 9):
        rs = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
        rs.attempt_number = n
        gaps.append(grow(rs))
    assert gaps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
