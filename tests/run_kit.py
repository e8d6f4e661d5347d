"""Recorded runs for the tests that need one: a shell step of a node, a fresh one-hop run,
an unfinished run written as ``apply`` writes it (the stored plan with its digest, then the
state file), and an engine over two local workers for the tests of what runs between nodes.

Owns :func:`shell_step`, :func:`one_hop_run`, :func:`recorded_run` and
:func:`two_worker_engine`, built through the library's own constructors (``state.new_run``,
``execute.stored``, ``Engine``), so a change of those formats reaches every such test at
once. Must not: hold assertions (the tests do).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from upgrader import state as st
from upgrader.core.model import PlanEntry, Step
from upgrader.execute import stored
from upgrader.execute.engine import Engine, EngineOptions
from upgrader.execute.events import EventHandler
from upgrader.transport.local import LocalTransport

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


def two_worker_engine(
    tmp_path: Path,
    before_batch: Callable[[Sequence[PlanEntry]], None],
    on_event: EventHandler | None = None,
) -> Engine:
    """An engine over workers ``w-1`` and ``w-2``, each a local node in its own folder under
    ``tmp_path`` whose one step writes ``out`` there; the state file is
    ``tmp_path/state.json`` (resumed when it is there, so a second engine is a rerun)."""
    steps = {
        n: shell_step("work", "echo done > out", node=n, timeout=300.0, sudo=False)
        for n in ("w-1", "w-2")
    }
    entries = [PlanEntry(n, "worker", "worker", HOP, (step,)) for n, step in steps.items()]
    for e in entries:
        (tmp_path / e.node).mkdir(exist_ok=True)
    state_path = tmp_path / "state.json"
    s = st.load(state_path) or one_hop_run(
        [x for e in entries for x in e.steps], inventory=str(tmp_path / "inventory.yaml")
    )
    return Engine(
        entries,
        s,
        save=lambda x: st.save(state_path, x),
        transports=lambda n: LocalTransport(n, cwd=str(tmp_path / n)),
        kube=None,  # type: ignore[arg-type]  # shell steps only
        options=EngineOptions(),
        on_event=on_event,
        before_batch=before_batch,
    )
