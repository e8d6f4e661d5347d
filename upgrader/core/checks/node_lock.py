"""Whether every node can take the node lock the engine runs each step command under.

Owns one finding, ``NODE_LOCK_UNAVAILABLE`` (blocker): the facts script found no
``flock(1)`` on a node that the run touches, or a lock directory (``/run/upgrader``) that is
there but is not a root-owned directory only root may write (a symlink, another owner,
group/other write: someone may hold or plant the lock; see
:mod:`upgrader.core.nodelock` for why every command runs under that lock). Without it every
step on the node would fail at its first command; blocking here says so before anything
runs. Input: ``NodeFacts.extra["node_lock"]`` (True, False, or absent/None when the facts
predate the probe or the node could not be asked, which is not judged).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterable

from upgrader.core import nodelock
from upgrader.core.model import Facts, Finding, Severity


def check_node_lock(facts: Facts, *, nodes: Iterable[str]) -> list[Finding]:
    wanted = set(nodes)
    out: list[Finding] = []
    for n in facts.nodes:
        if n.name not in wanted or not n.reachable or n.extra.get("node_lock") is not False:
            continue
        out.append(
            Finding(
                "NODE_LOCK_UNAVAILABLE",
                Severity.BLOCKER,
                f"flock(1) is missing, or {nodelock.LOCK_DIR} is not a directory owned by root "
                "that only root may write (a symlink, another owner, or group/other write); "
                f"every step command runs under `flock {nodelock.LOCK_PATH}` so that a command "
                "left running by a killed run is never started a second time beside it",
                node=n.name,
                fix=f"install util-linux (it provides flock); if {nodelock.LOCK_DIR} exists, "
                f"look at who made it, then remove it (`rm -rf {nodelock.LOCK_DIR}`: upgrader "
                "creates it, root-owned, mode 0700)",
            )
        )
    return out
