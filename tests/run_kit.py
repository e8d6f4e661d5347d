"""Recorded runs for the tests that need one on disk: a shell step of a worker and an
unfinished run of it written as ``apply`` writes it (the stored plan with its digest, then
the state file).

Owns :func:`shell_step` and :func:`recorded_run`, built through the library's own
constructors (``state.new_run``, ``execute.stored``), so a change of those formats reaches
every such test at once. Must not: hold assertions (the tests do).
"""

from __future__ import annotations

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
    description: str | None = None,
    timeout: float = 10.0,
) -> Step:
    """A step of ``node``'s worker phase at v1.28.4 that runs ``command``."""
    return Step(
        id=f"{HOP}/{node}/worker/{name}",
        kind="shell",
        node=node,
        hop=HOP,
        phase="worker",
        name=name,
        description=description if description is not None else name,
        command=command,
        timeout=timeout,
    )


def recorded_run(path: Path, step: Step, **run: Any) -> st.RunState:
    """Run ``r1`` (v1.27.8 -> v1.28.4, per-hop) of the one ``step``: its stored plan beside
    ``path`` and the state file at ``path``; ``run``: the other fields of ``state.new_run``
    (``cluster``, ``inventory``, ``fingerprint``, ...)."""
    entry = PlanEntry(node=step.node, role="worker", phase="worker", hop=HOP, steps=(step,))
    sp = stored.StoredPlan("r1", "v1.27.8", HOP, (HOP,), "per-hop", (entry,))
    digest = stored.save(stored.plan_path(path), sp)
    state = st.new_run(
        target=HOP,
        hops=[HOP],
        strategy="per-hop",
        steps=[step],
        run_id="r1",
        plan_digest=digest,
        **run,
    )
    st.save(path, state)
    return state
