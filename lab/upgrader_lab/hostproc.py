"""The host processes the lab runs and looks at while it builds, starts and stops itself.

Owns the three ways the lab touches host processes: :func:`captured` (a short command run
to its end, its output captured as text), :func:`detached` (one of the lab's servers in its
own session: no stdin, stdout and stderr to its log, no inherited descriptors) and
:func:`proc_files` (a file of every process in ``/proc``).

Must not: decide what a command's failure means (its caller does), or kill anything.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO


def captured(
    argv: Sequence[str],
    timeout: float,
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end (``stdin`` as its input), its output captured as text; its
    exit status is the caller's to read. Raises ``OSError`` or ``subprocess.TimeoutExpired``."""
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def detached(
    argv: Sequence[str],
    out: IO[bytes],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a lab server: in its own session, without stdin, stdout and stderr to ``out``,
    no descriptor inherited."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
        close_fds=True,
        cwd=cwd,
        env=env,
        preexec_fn=preexec_fn,
    )


def proc_files(name: str) -> Iterator[tuple[int, bytes]]:
    """``(pid, /proc/PID/<name>)`` of every process whose file can be read (one that ended
    meanwhile, or is not ours to read, is passed over)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / name).read_bytes()
        except OSError:
            continue
        yield int(entry.name), data
