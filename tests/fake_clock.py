"""The fake clock of the tests of waits and polls: time that only moves when slept on.

Owns :class:`FakeClock`. Must not: read the real clock or sleep for real (a test on it
takes no time), or hold a test's assertions beyond refusing a negative sleep.
"""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when slept on, recording every sleep; call it for the time
    (as ``time.monotonic``), pass :meth:`sleep` for ``time.sleep``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
