"""The transport protocol: run one shell command on one node, get a Result.

Owns the contract every transport implements (SSH, local) and the Result value.
Must not: know about Kubernetes, plans or steps; print anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP


@dataclass(frozen=True)
class Result:
    """What one command did. ``exit_code`` is ``None`` when it timed out or the session dropped.
    ``stdout_dropped``/``stderr_dropped``: bytes past the transport's cap, dropped unread
    (the text then holds the head, a ``[... N bytes dropped ...]`` line and the tail: see
    :mod:`upgrader.transport.bounded`)."""

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    stdout_dropped: int = 0
    stderr_dropped: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@runtime_checkable
class Transport(Protocol):
    """Runs shell commands on one node. ``command`` is a complete POSIX shell command line,
    already quoted. ``sudo`` wraps it so that it runs as root on the node. Raises
    :class:`upgrader.errors.TransportError` when the node cannot be reached at all; a
    command that runs and fails returns a Result with a non-zero exit code. At most
    ``max_output`` bytes of stdout and of stderr are kept (memory stays flat whatever
    the node sends; the rest is read and dropped)."""

    node: str

    def run(
        self,
        command: str,
        timeout: float = 60.0,
        sudo: bool = True,
        max_output: int = DEFAULT_OUTPUT_CAP,
    ) -> Result: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to reach one node over SSH, already merged from the inventory's
    defaults, the node's overrides and ``~/.ssh/config``. No secret values: a sudo or
    key password is named by the environment variable that holds it."""

    node: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    host_key_policy: str = "strict"  # "strict" | "accept-new"
    sudo: bool = True
    sudo_password_env: str | None = None  # env var holding the sudo password, if any
    connect_timeout: float = 10.0
    keepalive: int = 15
    jump: SSHTarget | None = None
    # the inventory's node_env for this node: exported for every command, delivered on
    # the command's stdin (upgrader.core.nodeenv); never shown (a proxy URL may hold a password)
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # the inventory's form (native, kubespray), for hints naming its settings; not part
    # of what the target is
    settings_form: str = field(default="native", compare=False)
