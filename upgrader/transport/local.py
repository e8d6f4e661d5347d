"""Local transport: runs each command with ``sh -c`` on this machine (engine tests, the lab).

Owns the same Result semantics as the SSH transport: stdout and stderr kept apart and
bounded (:mod:`upgrader.transport.bounded`: read as they arrive, past the cap dropped), stdin
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
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from upgrader.transport.base import Result, brief, captured
from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP, OutputBuffer

log = logging.getLogger("upgrader.transport")

# After a kill, how long to wait for the pipes to close (a detached grandchild may hold them).
_KILL_GRACE = 5.0
_READ_CHUNK = 65536


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

    def run(
        self,
        command: str,
        timeout: float = 60.0,
        sudo: bool = True,
        max_output: int = DEFAULT_OUTPUT_CAP,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> Result:
        log.debug("node %s: start (local, timeout %.0fs): %s", self.node, timeout, brief(command))
        start = time.monotonic()
        out, err = OutputBuffer(max_output), OutputBuffer(max_output, on_stderr)
        returncode, timed_out = self._process(command, subprocess.PIPE, out, err, timeout)
        duration = time.monotonic() - start
        if timed_out:
            log.warning(
                "node %s: command timed out after %.0fs: %s", self.node, timeout, brief(command)
            )
            return captured(command, None, out, err, duration, timed_out=True)
        code = returncode if returncode >= 0 else 128 - returncode
        log.debug("node %s: end: exit %d in %.2fs", self.node, code, duration)
        return captured(command, code, out, err, duration)

    def close(self) -> None:
        """Nothing to release."""

    def _process(
        self,
        command: str,
        stdout: int | IO[bytes],
        out: OutputBuffer | None,
        err: OutputBuffer,
        timeout: float,
    ) -> tuple[int, bool]:
        """Run ``command`` in its own process group, its stdout into ``stdout`` (a pipe
        read into ``out``, or a file), its stderr into ``err``; past ``timeout`` the group
        is killed. Returns (return code, timed out)."""
        proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
        )
        try:
            timed_out = _pump(proc, time.monotonic() + timeout, out, err)
            if timed_out:
                _kill_group(proc)
                # a detached grandchild may hold the pipes: read them a little longer
                _pump(proc, time.monotonic() + _KILL_GRACE, out, err)
            proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        return proc.returncode, timed_out


def _stream_to(
    transport: LocalTransport, command: str, local: str | os.PathLike[str], timeout: float
) -> Result:
    dest = Path(local)
    part = dest.with_name(dest.name + ".part")
    start = time.monotonic()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = OutputBuffer()
    with os.fdopen(fd, "wb") as sink:
        returncode, timed_out = transport._process(command, sink, None, err, timeout)
    code: int | None = None if timed_out else returncode
    if code == 0:
        os.replace(part, dest)
    else:
        part.unlink(missing_ok=True)
    return Result(
        command,
        code,
        "",
        err.text(),
        time.monotonic() - start,
        timed_out=code is None,
        stderr_dropped=err.dropped,
    )


def _pump(
    proc: subprocess.Popen[bytes], deadline: float, out: OutputBuffer | None, err: OutputBuffer
) -> bool:
    """Read the process's stdout and stderr into their bounded buffers as they arrive
    until both pipes closed (False) or ``deadline`` passed (True)."""
    sinks: dict[int, OutputBuffer] = {}
    for pipe, buf in ((proc.stdout, out), (proc.stderr, err)):
        if pipe is not None and buf is not None and not pipe.closed:
            os.set_blocking(pipe.fileno(), False)
            sinks[pipe.fileno()] = buf
    with selectors.DefaultSelector() as sel:
        for fd in sinks:
            sel.register(fd, selectors.EVENT_READ)
        while sinks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            for key, _ in sel.select(min(remaining, 1.0)):
                fd = int(key.fd)
                try:
                    data = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    sinks[fd].write(data)
                else:
                    sel.unregister(fd)
                    del sinks[fd]
    return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
