"""The transport protocols: run one shell command on one node, get a Result; copy a
command's output into a local file.

Owns the contracts every transport implements (SSH, local: :class:`Transport`,
:class:`FileTransport`), the Result value (:func:`captured`: of a command's bounded output)
and how a command is shown in logs (:func:`brief`).
Must not: know about Kubernetes, plans or steps; print anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP, OutputBuffer


def brief(command: str, limit: int = 160) -> str:
    """A command as logged: long or multi-line scripts shortened to their first line."""
    lines = command.splitlines() or [""]
    if len(lines) == 1 and len(command) <= limit:
        return command
    return f"{lines[0][:limit]} ... ({len(lines)} lines, {len(command)} chars)"


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


def captured(
    command: str,
    exit_code: int | None,
    out: OutputBuffer,
    err: OutputBuffer,
    duration: float,
    timed_out: bool = False,
) -> Result:
    """The Result of a command whose stdout and stderr went into ``out`` and ``err``."""
    return Result(
        command,
        exit_code,
        out.text(),
        err.text(),
        duration,
        timed_out=timed_out,
        stdout_dropped=out.dropped,
        stderr_dropped=err.dropped,
    )


@runtime_checkable
class Transport(Protocol):
    """Runs shell commands on one node. ``command`` is a complete POSIX shell command line,
    already quoted. ``sudo`` wraps it so that it runs as root on the node. Raises
    :class:`upgrader.errors.TransportError` when the node cannot be reached at all; a
    command that runs and fails returns a Result with a non-zero exit code. At most
    ``max_output`` bytes of stdout and of stderr are kept (memory stays flat whatever
    the node sends; the rest is read and dropped). ``on_stderr`` sees stderr's bytes as
    they arrive (a script that reports progress there)."""

    node: str

    def run(
        self,
        command: str,
        timeout: float = 60.0,
        sudo: bool = True,
        max_output: int = DEFAULT_OUTPUT_CAP,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> Result: ...

    def close(self) -> None: ...


@runtime_checkable
class FileTransport(Protocol):
    """Copies files from one node: ``command`` (run as root when ``sudo``) writes the file
    on its stdout, which goes byte for byte into ``local``: created 0600 as
    ``<local>.part`` and renamed when the command exits 0, removed otherwise. The Result's
    stdout is empty; stderr as usual. For files only root may read (an etcd snapshot): no
    readable copy on the node, no SFTP as a non-root user."""

    def stream_to(
        self,
        command: str,
        local: str | os.PathLike[str],
        timeout: float = 600.0,
        sudo: bool = True,
    ) -> Result: ...


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
