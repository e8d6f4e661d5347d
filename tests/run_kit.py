"""Recorded runs for the tests that need one: a shell step of a node, a fresh one-hop run,
an unfinished run written as ``apply`` writes it (the stored plan with its digest, then the
state file), and an engine over two local workers for the tests of what runs between nodes.

Owns :func:`two_worker_engine`, built through the library's own constructors
(``state.new_run``, ``Engine``), so a change of those formats reaches every such test at
once; :func:`shell_step`, :func:`one_hop_run` and :func:`recorded_run` are
``bench._recorded``'s (the security campaign forges state files from the same run). Must
not: hold assertions (the tests do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bench._recorded import HOP, one_hop_run, recorded_run, shell_step
from upgrader import state as st
from upgrader.core.model import PlanEntry
from upgrader.execute.engine import Engine, EngineOptions
from upgrader.execute.events import EventHandler
from upgrader.transport.local import LocalTransport

__all__ = ["HOP", "one_hop_run", "recorded_run", "shell_step", "two_worker_engine"]


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
