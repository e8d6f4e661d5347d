"""The lab's own CPU time, so a benchmark can show what the simulation costs beside what a
tool costs.

Owns :func:`cpu_seconds`: the CPU time (user + system) of the lab's running servers (sshd,
the API server, the package server) and of every process below them, plus that of every
process they have reaped: each SSH session, the node wrapper and the simulated node tools it
ran. A process counts by its own ``/proc`` entry while it runs (or waits, a zombie, to be
reaped) and through its parent's children's time once reaped, so a read does not depend on
when a finished session is collected. The difference of two reads around a run is what the
lab spent on it.

Must not: signal, change or wait for any process (it only reads ``/proc``), or count a
process that is not the lab's (pids come from :func:`upgrader_lab.runner.running_pids`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from upgrader_lab import runner

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (``/proc/PID/stat`` fields 14-17): its
    own CPU and that of the children it has waited for; 0.0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # the command name (field 2) may hold spaces: the fields after it follow its ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / _TICKS


def cpu_seconds(lab_dir: Path) -> float:
    """The CPU time the running lab in ``lab_dir`` has spent so far (see the module)."""
    roots = [p for group in runner.running_pids(lab_dir).values() for p in group]
    seen = set(roots) | runner._descendants(roots)
    return sum(process_cpu_seconds(p) for p in sorted(seen))


def cpu_since(lab_dir: Path, before: float, settle: float = 0.1, timeout: float = 3.0) -> float:
    """The lab's CPU seconds since a :func:`cpu_seconds` read of ``before``, read once the
    sessions a client has just closed are collected: when two reads ``settle`` seconds
    apart agree (or after ``timeout``)."""
    last = cpu_seconds(lab_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(settle)
        now = cpu_seconds(lab_dir)
        if now == last:
            break
        last = now
    return last - before
