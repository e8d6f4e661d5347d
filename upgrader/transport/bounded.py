"""Bounded capture of a command's output: what every transport reads stdout and stderr into.

Owns :class:`OutputBuffer` (at most ``cap`` bytes kept whatever a node sends: the first
half and the last half, everything between counted and dropped as it arrives, never
buffered) and the marker ``[... N bytes dropped ...]`` that stands for the dropped middle
in the text; :data:`DEFAULT_OUTPUT_CAP` (4 MiB per stream per command).

Why head and tail: the head says what the command set out to do (apt's plan, kubeadm's
preflight) and the tail holds how it ended (the error, the summary); the middle of a huge
output is progress noise. A reader that needs a complete output (the fact script) checks
:attr:`OutputBuffer.dropped` and refuses a capped one.

Must not: do I/O, or keep more than ``cap`` bytes (plus one read chunk) at any moment.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_OUTPUT_CAP = 4 * 1024 * 1024


def dropped_marker(n: int) -> str:
    """The line that replaces ``n`` dropped bytes in a capped output."""
    return f"\n[... {n} bytes dropped ...]\n"


class OutputBuffer:
    """Keeps the first ``cap // 2`` and the last ``cap - cap // 2`` bytes fed to it;
    ``watch`` sees every chunk as it arrives (before any is dropped)."""

    def __init__(
        self, cap: int = DEFAULT_OUTPUT_CAP, watch: Callable[[bytes], None] | None = None
    ) -> None:
        self.cap = max(2, cap)
        self._watch = watch
        self._head_cap = self.cap // 2
        self._tail_cap = self.cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0  # bytes fed

    @property
    def dropped(self) -> int:
        return max(0, self.total - len(self._head) - len(self._tail))

    def write(self, data: bytes) -> None:
        if self._watch is not None:
            self._watch(data)
        self.total += len(data)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self._tail_cap:
            self._tail = bytearray(data[-self._tail_cap :])
            return
        self._tail += data
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            del self._tail[:excess]

    def text(self) -> str:
        """The kept bytes as text (UTF-8, invalid bytes replaced), the marker between head
        and tail when anything was dropped."""
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        n = self.dropped
        return head + dropped_marker(n) + tail if n else head + tail
