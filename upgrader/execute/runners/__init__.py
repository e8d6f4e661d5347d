"""One runner per step kind, registered by :class:`~upgrader.core.vocab.StepKind`.

Owns the registry (:data:`RUNNERS`, :func:`runner_for`): which runner does one attempt of
which kind. The runners live beside it: ``shell`` (:mod:`.shell`), the API steps
(:mod:`.api`), ``etcd-snapshot`` (:mod:`.etcd_snapshot`); what a runner is and what it may
ask of the engine is :mod:`.base`.

Must not: run anything itself, or know the order of steps (the engine does).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from upgrader.core.vocab import StepKind
from upgrader.execute.runners.api import CordonRunner, DrainRunner, UncordonRunner, WaitRunner
from upgrader.execute.runners.base import Runner
from upgrader.execute.runners.etcd_snapshot import SnapshotRunner
from upgrader.execute.runners.shell import ShellRunner

SHELL = ShellRunner()

RUNNERS: Mapping[StepKind, Runner] = MappingProxyType(
    {
        StepKind.SHELL: SHELL,
        StepKind.CORDON: CordonRunner(),
        StepKind.DRAIN: DrainRunner(),
        StepKind.UNCORDON: UncordonRunner(),
        StepKind.WAIT_READY: WaitRunner(
            lambda kube: kube.wait_ready, "kubelet_version", "Ready at kubelet {version}"
        ),
        StepKind.WAIT_CONTROL_PLANE: WaitRunner(
            lambda kube: kube.wait_control_plane, "version", "control plane at {version}"
        ),
        StepKind.ETCD_SNAPSHOT: SnapshotRunner(),
    }
)


def runner_for(kind: str) -> Runner | None:
    """The runner of ``kind`` (a stored plan's string), None for a kind nobody runs."""
    try:
        return RUNNERS.get(StepKind(kind))
    except ValueError:
        return None
