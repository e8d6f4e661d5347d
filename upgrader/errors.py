"""Typed errors and the exit codes they map to.

Owns the error hierarchy every layer raises and the documented exit codes the CLI
returns. Must not: print, log, or import anything beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    STEP_FAILED = 1  # a step failed during apply; state saved, rerun resumes
    BAD_INPUT = 2  # configuration / usage error; nothing was executed
    BLOCKED = 3  # a blocker finding stands (preflight / policy)
    TRANSPORT = 4  # SSH could not reach a node
    KUBERNETES = 5  # the Kubernetes API failed or refused
    LOCKED = 6  # another run holds the lock
    OUTSIDE_WINDOW = 7  # outside every --window: no node started (or the run paused), resumable
    INTERRUPTED = 130


# Blocker finding codes that mean "could not reach": they decide the exit code of a refusal
# (one code per cause, README "Exit codes"), ahead of the policy's own blockers.
SSH_UNREACHABLE_CODES = frozenset({"NODE_UNREACHABLE", "HOST_KEY_REJECTED"})
API_UNREACHABLE_CODES = frozenset({"API_UNREACHABLE"})
# ... and "another run holds the cluster lock" (the preflight's view of the Lease)
LOCK_HELD_CODES = frozenset({"LOCK_HELD"})


def refusal_exit_code(codes: Iterable[str]) -> ExitCode:
    """The exit code of a run refused by blocker findings with these ``codes``: 4 when a
    node could not be reached over SSH (refused host key included), else 5 when the
    Kubernetes API could not be, else 6 when the only blocker is another run holding the
    cluster lock (waiting is all it takes), else 3 (blockers to fix)."""
    found = set(codes)
    if found & SSH_UNREACHABLE_CODES:
        return ExitCode.TRANSPORT
    if found & API_UNREACHABLE_CODES:
        return ExitCode.KUBERNETES
    if found and found <= LOCK_HELD_CODES:
        return ExitCode.LOCKED
    return ExitCode.BLOCKED


class UpgraderError(Exception):
    """Base of every error upgrader raises on purpose. ``str(e)`` is one line."""

    exit_code: ExitCode = ExitCode.STEP_FAILED
    # what to do next, printed by the CLI on the lines after ``error: ...`` (or None)
    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


class ConfigError(UpgraderError):
    """Bad input: inventory, facts file, playbook, target, flags."""

    exit_code = ExitCode.BAD_INPUT


class PreflightError(UpgraderError):
    """A blocker finding stands."""

    exit_code = ExitCode.BLOCKED


class TransportError(UpgraderError):
    """A node could not be reached, or a session dropped."""

    exit_code = ExitCode.TRANSPORT

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class HostKeyError(TransportError):
    """The node's SSH host key is unknown or changed."""


class KubernetesError(UpgraderError):
    """The Kubernetes API failed, timed out, or refused."""

    exit_code = ExitCode.KUBERNETES


class StepFailed(UpgraderError):
    """A step of the plan failed on a node."""

    exit_code = ExitCode.STEP_FAILED

    def __init__(self, message: str, node: str | None = None, step: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.step = step


class DrainTimeout(StepFailed):
    """A drain did not finish in time: the message names the pods still on the node and
    what blocked each (the PodDisruptionBudget, by name); ``remaining`` and ``blocked`` list
    them (``ns/name``)."""

    def __init__(
        self,
        message: str,
        node: str | None = None,
        remaining: tuple[str, ...] = (),
        blocked: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, node=node)
        self.remaining = tuple(remaining)
        self.blocked = tuple(blocked)


class Interrupted(UpgraderError):
    """The run was stopped by SIGINT or SIGTERM; its state says where, and it resumes."""

    exit_code = ExitCode.INTERRUPTED


class OutsideWindow(UpgraderError):
    """Now is outside every maintenance window (``--window``): the run did not start, or it
    stopped before its next node (recorded ``interrupted``, resumed by the same command)."""

    exit_code = ExitCode.OUTSIDE_WINDOW


class LockHeld(UpgraderError):
    """Another run holds the state-file lock or the cluster Lease."""

    exit_code = ExitCode.LOCKED
