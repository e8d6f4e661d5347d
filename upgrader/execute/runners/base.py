"""What a step runner is and what it may ask of the engine.

Owns the :class:`Runner` protocol (one attempt of one step kind), the :class:`Host`
protocol (the engine's services a runner uses: the state, events, transcripts, the node's
transport, commands under the node lock, the done-check) and the outcomes of an attempt
other than success (:class:`AttemptFailed`, :class:`Retryable`, :class:`Done`).

Must not: hold behaviour of any step kind, import rich/typer/paramiko/kubernetes, or print.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from upgrader import state as st
    from upgrader.core.model import Step
    from upgrader.execute.engine import EngineOptions
    from upgrader.execute.ops import KubeOps
    from upgrader.transport.base import Result, Transport


class AttemptFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may follow."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        exit_code: int | None = None,
        stderr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.exit_code = exit_code
        self.stderr = stderr


class Retryable(AttemptFailed):
    """A failed attempt after which another may follow (tenacity retries on this type)."""


class Done(Exception):
    """The step's effect is there (its check passed after a failed attempt)."""


class Host(Protocol):
    """The engine as a runner sees it."""

    options: EngineOptions

    @property
    def state(self) -> st.RunState: ...

    @property
    def kube(self) -> KubeOps: ...

    def update(self, fn: Callable[[st.RunState], st.RunState]) -> st.RunState: ...

    def mask(self, text: str) -> str: ...

    def emit(self, kind: str, /, **data: Any) -> None: ...

    def step_data(self, step: Step) -> dict[str, Any]: ...

    def note(self, node: str, message: str) -> None: ...

    def transport(self, node: str) -> Transport: ...

    def waiting(self, step: Step) -> Callable[[str], None]:
        """What a long wait of ``step`` calls to say what it waits for."""
        ...

    def run_command(
        self, step: Step, command: str, label: str, attempt: int, timeout: float
    ) -> tuple[Result | None, str | None]:
        """``command`` on the step's node (under the node lock when it runs as root),
        recorded in the transcript: (result, transport error text), exactly one set."""
        ...

    def run_waiting(
        self,
        step: Step,
        command: str,
        label: str,
        attempt: int,
        timeout: float,
        since: float | None = None,
    ) -> tuple[Result | None, str | None]:
        """:meth:`run_command`, run again while another command holds the node lock."""
        ...

    def check(self, step: Step, attempt: int, why: str, since: float | None = None) -> bool:
        """The step's done-check (waiting for the node lock); True when it passed."""
        ...

    def announce_lock_wait(self, step: Step, stderr: str) -> float:
        """Say that ``step`` waits for the node lock; return when."""
        ...


class Runner(Protocol):
    """One step kind: how one attempt runs, how long it may take, and the exit code a
    success records (``0`` for commands, ``None`` for API steps)."""

    success_exit_code: int | None

    def attempt(self, host: Host, step: Step, attempt: int) -> str:
        """One attempt (``running`` is recorded already). Returns the success message;
        raises :class:`Retryable`, :class:`AttemptFailed` or :class:`Done`."""
        ...

    def limit(self, host: Host, step: Step) -> float:
        """How long one attempt of ``step`` may take (its timeout, as applied)."""
        ...
