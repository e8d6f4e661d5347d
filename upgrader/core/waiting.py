"""The clock side of every long wait: its deadline, when it speaks, and how long it sleeps.

Owns :class:`Wait`, which the readiness gates (``kube.nodes.wait_node_ready``,
``wait_control_plane``), the health gate between nodes and the post-flight budget wait
share: a deadline ``timeout`` seconds from the start, a first progress line after
:data:`FIRST_SAY` seconds (or ``progress_every`` if shorter) and then one every
``progress_every`` seconds, each ending with the time left, and the sleep it naps with (a
watch-driven wait's sleep ends early on a change). Owns :func:`poll_until`, the one polling
loop of the product, on tenacity (``retry_if_result``, a ``stop_after_delay`` on the
injected clock, the capped exponential wait of :func:`backoff`, the injected sleep), and
:func:`backoff`, the gap shape the API retries share.

Must not: read the clock or sleep except through the ``clock`` and ``sleep`` it is given,
nor know what is waited for: the caller evaluates, decides and words the progress line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeVar

import tenacity

Clock = Callable[[], float]
Sleep = Callable[[float], None]
T = TypeVar("T")

FIRST_POLL = 0.25  # seconds before the first re-check of a readiness gate
FIRST_SAY = 5.0  # a wait still waiting after this long says what it waits for


def first_say(progress_every: float) -> float:
    """When a wait first speaks: after :data:`FIRST_SAY` seconds (a wait that ends sooner
    stays quiet), or ``progress_every`` if that is shorter; then every ``progress_every``."""
    return min(FIRST_SAY, progress_every)


@dataclass(eq=False)
class Wait:
    """One wait of ``timeout`` seconds, started when it is made."""

    timeout: float
    _: KW_ONLY
    clock: Clock
    sleep: Sleep
    on_progress: Callable[[str], None] | None = None
    progress_every: float = 30.0
    deadline: float = field(init=False)
    _next_say: float = field(init=False)

    def __post_init__(self) -> None:
        start = self.clock()
        self.deadline = start + self.timeout
        self._next_say = start + first_say(self.progress_every)

    def now(self) -> float:
        return self.clock()

    def left(self, now: float | None = None) -> float:
        """Seconds until the deadline (never negative)."""
        return max(0.0, self.deadline - (self.clock() if now is None else now))

    def due(self, now: float) -> bool:
        """Whether a progress line is due at ``now`` (and someone listens)."""
        return self.on_progress is not None and now >= self._next_say

    def say(self, text: str, now: float) -> None:
        """Tell the listener ``text`` and the time left, and schedule the next line."""
        if self.on_progress is None:
            return
        self._next_say = now + self.progress_every
        self.on_progress(f"{text}; {self.left(now):.0f}s of {self.timeout:g}s left")


def backoff(first: float, cap: float) -> tenacity.wait_exponential:
    """The capped exponential gap of attempt ``n`` (1-based): ``first * 2**(n-1)``, at most
    ``cap`` (tenacity's ``wait_exponential``). One shape for the readiness polls
    (:data:`FIRST_POLL` doubling up to the poll interval: a node Ready one second after
    its kubelet restarted is seen then, not one whole poll later, while a slow node still
    costs one read per poll) and the API retries."""
    return tenacity.wait_exponential(multiplier=first, max=cap)


class _stop_at_deadline(tenacity.stop_after_delay):
    """``stop_after_delay`` measured on the wait's own clock (tenacity reads
    ``time.monotonic``, which a test's fake clock does not move); with ``whole_naps``
    it also stops when the next nap would end past the deadline (a gap that cannot
    be slept whole is not started: the health gate's and the budget wait's rule)."""

    def __init__(self, wait: Wait, whole_naps: bool) -> None:
        super().__init__(wait.timeout)
        self._wait = wait
        self._whole = whole_naps

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        now = self._wait.now()
        if self._whole:
            return bool(now + retry_state.upcoming_sleep > self._wait.deadline)
        return bool(now >= self._wait.deadline)


@dataclass(frozen=True)
class Polled(Generic[T]):
    """What :func:`poll_until` ended with: the last result, and whether it was done."""

    result: T
    done: bool
    attempts: int


def poll_until(
    attempt: Callable[[], T],
    done: Callable[[T], bool],
    *,
    wait: Wait,
    first: float,
    cap: float,
    progress: Callable[[T], str] | None = None,
    gap: Callable[[T, float], float] | None = None,
    whole_naps: bool = False,
) -> Polled[T]:
    """Call ``attempt`` until ``done(result)`` or ``wait``'s deadline; the last result.

    Between attempts it naps (``wait``'s sleep) a capped exponential gap: ``first``,
    doubling up to ``cap`` (``gap(result, that)`` may choose another, e.g. the health
    gate's interval after a pass), never past the deadline; the attempt after the
    last nap is at the deadline. ``whole_naps``: a nap that would end past the deadline
    is not taken, the poll ends there instead. When a progress line is due (after
    :data:`FIRST_SAY` seconds, then every ``progress_every``), ``wait`` says
    ``progress(result)`` with the time left, before the nap. Exceptions of ``attempt``
    propagate: the caller decides which errors a poll tolerates (it returns them)."""
    exp = backoff(first, cap)

    def polled(rs: tenacity.RetryCallState) -> Polled[T]:
        assert rs.outcome is not None
        out: Polled[T] = rs.outcome.result()
        return out

    def next_gap(rs: tenacity.RetryCallState) -> float:
        g = exp(rs)
        if gap is not None:
            g = gap(polled(rs).result, g)
        return g if whole_naps else min(g, wait.left())

    def speak(rs: tenacity.RetryCallState) -> None:
        now = wait.now()
        if progress is not None and wait.due(now):
            wait.say(progress(polled(rs).result), now)

    def once(rs_attempt: list[int]) -> Polled[T]:
        rs_attempt[0] += 1
        r = attempt()
        return Polled(r, done(r), rs_attempt[0])

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda p: not p.done),
        stop=_stop_at_deadline(wait, whole_naps),
        wait=next_gap,
        sleep=wait.sleep,
        before_sleep=speak,
        retry_error_callback=polled,
        reraise=True,
    )
    out: Polled[T] = retrying(once, [0])
    return out
