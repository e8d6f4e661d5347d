"""The clock side of every long wait: its deadline, when it speaks, and how long it sleeps.

Owns :class:`Wait`, which the readiness gates (``kube.nodes.wait_node_ready``,
``wait_control_plane``), the health gate between nodes and the post-flight budget wait
share: a deadline ``timeout`` seconds from the start, a first progress line after
:data:`FIRST_SAY` seconds (or ``progress_every`` if shorter) and then one every
``progress_every`` seconds, each ending with the time left, and sleeps that never end past
the deadline. :func:`poll_intervals` is the gap sequence of a readiness poll.

Must not: read the clock or sleep except through the ``clock`` and ``sleep`` it is given,
nor know what is waited for: the caller evaluates, decides and words the progress line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

Clock = Callable[[], float]
Sleep = Callable[[float], None]

FIRST_POLL = 0.25  # seconds before the first re-check of a readiness gate
FIRST_SAY = 5.0  # a wait still waiting after this long says what it waits for


def first_say(progress_every: float) -> float:
    """When a wait first speaks: after :data:`FIRST_SAY` seconds (a wait that ends sooner
    stays quiet), or ``progress_every`` if that is shorter; then every ``progress_every``."""
    return min(FIRST_SAY, progress_every)


def poll_intervals(poll: float) -> Iterator[float]:
    """Gaps between the reads of a readiness gate: ``FIRST_POLL``, doubling up to ``poll``.
    A node Ready one second after its kubelet restarted is seen then, not one whole
    ``poll`` later (with the playbook's 5 s that was up to 4 s lost per node); a slow node
    still costs one read per ``poll``."""
    gap = min(FIRST_POLL, poll)
    while True:
        yield gap
        gap = min(poll, gap * 2)


class Wait:
    """One wait of ``timeout`` seconds, started when it is made."""

    def __init__(
        self,
        timeout: float,
        *,
        clock: Clock,
        sleep: Sleep,
        on_progress: Callable[[str], None] | None = None,
        progress_every: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress
        self._every = progress_every
        start = clock()
        self.deadline = start + timeout
        self._next_say = start + first_say(progress_every)

    def now(self) -> float:
        return self._clock()

    def left(self, now: float | None = None) -> float:
        """Seconds until the deadline (never negative)."""
        return max(0.0, self.deadline - (self._clock() if now is None else now))

    def due(self, now: float) -> bool:
        """Whether a progress line is due at ``now`` (and someone listens)."""
        return self._on_progress is not None and now >= self._next_say

    def say(self, text: str, now: float) -> None:
        """Tell the listener ``text`` and the time left, and schedule the next line."""
        if self._on_progress is None:
            return
        self._next_say = now + self._every
        self._on_progress(f"{text}; {self.left(now):.0f}s of {self.timeout:g}s left")

    def nap(self, gap: float, now: float) -> None:
        """Sleep ``gap`` seconds, or until the deadline if that comes first."""
        self._sleep(min(gap, self.left(now)))
