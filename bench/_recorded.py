"""A recorded run on disk, as ``apply`` records it, and the pieces of one: a shell step of a
node, a fresh one-hop run, an unfinished run written as ``apply`` writes it (the stored plan
with its digest, then the state file). The security campaign's state-file checks forge from
it; the tests import it through ``tests/run_kit.py`` (tests import ``bench``, never the
reverse).

Owns :func:`shell_step`, :func:`one_hop_run` and :func:`recorded_run`, built through the
library's own constructors (``core.model.Step``, ``state.new_run``, ``execute.stored``), so
a change of those formats reaches every user at once. Must not: hold assertions, or decide
an outcome.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from upgrader import state as st
from upgrader.core.model import PlanEntry, Step
from upgrader.execute import stored

HOP = "v1.28.4"


def shell_step(
    name: str = "a",
    command: str = "true",
    *,
    node: str = "w-1",
    phase: str = "worker",
    description: str | None = None,
    check: str | None = None,
    retry_safe: bool = False,
    timeout: float = 10.0,
    sudo: bool = True,
) -> Step:
    """A step of ``node``'s ``phase`` (the worker phase unless given) at v1.28.4 that runs
    ``command``."""
    return Step(
        id=f"{HOP}/{node}/{phase}/{name}",
        kind="shell",
        node=node,
        hop=HOP,
        phase=phase,
        name=name,
        description=description if description is not None else name,
        command=command,
        check=check,
        retry_safe=retry_safe,
        timeout=timeout,
        sudo=sudo,
    )


def one_hop_run(
    steps: Iterable[st.StepLike],
    *,
    cluster: str = "lab",
    inventory: str | os.PathLike[str] = "inv.yaml",
    fingerprint: str = "fp",
    target: str = HOP,
    **run: Any,
) -> st.RunState:
    """A fresh per-hop run of ``steps`` to ``target`` in one hop (v1.28.4 unless given);
    ``run``: the other fields of ``state.new_run`` (``run_id``, ``now``, ``precordoned``, ...)."""
    return st.new_run(
        cluster=cluster,
        inventory=inventory,
        fingerprint=fingerprint,
        target=target,
        hops=[target],
        strategy="per-hop",
        steps=steps,
        **run,
    )


def recorded_run(path: Path, step: Step, **run: Any) -> st.RunState:
    """Run ``r1`` (v1.27.8 -> v1.28.4, per-hop) of the one ``step``: its stored plan beside
    ``path`` and the state file at ``path``; ``run``: the other fields of ``state.new_run``
    (``cluster``, ``inventory``, ``fingerprint``, ...)."""
    entry = PlanEntry(node=step.node, role="worker", phase="worker", hop=HOP, steps=(step,))
    sp = stored.StoredPlan("r1", "v1.27.8", HOP, (HOP,), "per-hop", (entry,))
    digest = stored.save(stored.plan_path(path), sp)
    state = one_hop_run([step], run_id="r1", plan_digest=digest, **run)
    st.save(path, state)
    return state
