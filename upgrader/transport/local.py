"""Local transport: runs each command with ``sh -c`` on this machine (engine tests, the lab).

Owns the same Result semantics as the SSH transport: stdout and stderr kept apart, stdin
empty, a command past its timeout killed (its whole process group) and reported as
``exit_code=None, timed_out=True`` with whatever output it produced, a shell killed by a
signal reported as ``128 + signal`` (as a shell reports its children).

Must not: elevate privileges (``sudo`` is accepted and ignored: the command runs as the
current user), print, or know about Kubernetes, plans or steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from upgrader.transport.base import Result

log = logging.getLogger("upgrader.transport")

# After a kill, how long to wait for the pipes to close (a detached grandchild may hold them).
_KILL_GRACE = 5.0


def brief(command: str, limit: int = 160) -> str:
    """A command as logged: long or multi-line scripts shortened to their first line."""
    lines = command.splitlines() or [""]
    if len(lines) == 1 and len(command) <= limit:
        return command
    return f"{lines[0][:limit]} ... ({len(lines)} lines, {len(command)} chars)"


class LocalTransport:
    """Runs commands for ``node`` locally. ``env`` replaces the environment when given
    (merged over ``os.environ``); ``cwd`` is the working directory."""

    def __init__(
        self,
        node: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.node = node
        self._env = {**os.environ, **env} if env is not None else None
        self._cwd = Path(cwd) if cwd is not None else None

    def stream_to(
        self,
        command: str,
        local: str | os.PathLike[str],
        timeout: float = 600.0,
        sudo: bool = True,
    ) -> Result:
        """Like the SSH transport's: stdout into ``local`` (0600, via ``.part``)."""
        return _stream_to(self, command, local, timeout)

    def run(self, command: str, timeout: float = 60.0, sudo: bool = True) -> Result:
        log.debug("node %s: start (local, timeout %.0fs): %s", self.node, timeout, brief(command))
        start = time.monotonic()
        proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                out, err = proc.communicate(timeout=_KILL_GRACE)
            except subprocess.TimeoutExpired:
                if proc.stdout is not None:
                    proc.stdout.close()
                if proc.stderr is not None:
                    proc.stderr.close()
                proc.wait()
                out, err = b"", b""
            duration = time.monotonic() - start
            log.warning(
                "node %s: command timed out after %.0fs: %s", self.node, timeout, brief(command)
            )
            return Result(command, None, _text(out), _text(err), duration, timed_out=True)
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        duration = time.monotonic() - start
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        log.debug("node %s: end: exit %d in %.2fs", self.node, code, duration)
        return Result(command, code, _text(out), _text(err), duration)

    def close(self) -> None:
        """Nothing to release."""


def _stream_to(
    transport: LocalTransport, command: str, local: str | os.PathLike[str], timeout: float
) -> Result:
    dest = Path(local)
    part = dest.with_name(dest.name + ".part")
    start = time.monotonic()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as sink:
        proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.PIPE,
            env=transport._env,
            cwd=transport._cwd,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            code = None
    if code == 0:
        os.replace(part, dest)
    else:
        part.unlink(missing_ok=True)
    text = err.decode("utf-8", "replace")
    return Result(command, code, "", text, time.monotonic() - start, timed_out=code is None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
