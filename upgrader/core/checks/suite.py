"""Every preflight check at once: facts + :class:`PreflightInputs` + the plan's shape in,
findings out. What the planner glue (:func:`upgrader.planning.make_plan`) calls.

Owns which check sees which nodes: drainability looks at the nodes the plan drains; kubelet
hardening, runtime and certificates at the nodes the plan upgrades; the health gates at the
whole cluster. Reads that failed become ``PREFLIGHT_INCOMPLETE`` warnings. Without inputs
(a plan from a saved facts file) only the checks that need nothing beyond the facts run.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from upgrader.core.checks import (
    access,
    binaries,
    drainability,
    health,
    kubelet,
    node_lock,
    removed_apis,
    runtime,
)
from upgrader.core.checks.drainability import DrainFlags
from upgrader.core.checks.inputs import PreflightInputs
from upgrader.core.model import Facts, Finding, Severity
from upgrader.core.versions import KubeVersion


@dataclass(frozen=True)
class CheckOptions:
    """The operator's flags that change findings."""

    strict: bool = False
    harden_kubelet: bool = False
    drain: DrainFlags = field(default_factory=DrainFlags)
    own_run_id: str | None = None  # a resumed run: its own Lease is no leftover
    break_lock: bool = False
    cert_days: int = health.CERT_WARN_DAYS


def facts_findings(
    facts: Facts,
    *,
    target: KubeVersion,
    upgrade_nodes: Sequence[str],
    now: datetime,
    options: CheckOptions,
) -> list[Finding]:
    """The checks that need only the facts (SSH side)."""
    out: list[Finding] = []
    out += kubelet.check_kubelet(
        facts, nodes=upgrade_nodes, strict=options.strict, harden=options.harden_kubelet
    )
    out += runtime.check_runtime(facts, target, nodes=upgrade_nodes)
    out += runtime.check_dockerd(facts, nodes=upgrade_nodes)
    out += node_lock.check_node_lock(facts, nodes=upgrade_nodes)
    out += binaries.check_binary_install(facts, nodes=upgrade_nodes)
    out += health.check_certs(facts, now, days=options.cert_days)
    return out


def cluster_findings(
    inputs: PreflightInputs,
    *,
    current: KubeVersion,
    hops: Sequence[KubeVersion],
    drain_nodes: Sequence[str],
    options: CheckOptions,
    removed_table: Sequence[removed_apis.RemovedApi],
) -> list[Finding]:
    """The checks on what was read from the API (and etcd over SSH)."""
    out: list[Finding] = []
    if inputs.access is not None:
        exists = (inputs.lease is not None) if inputs.lease_read else None
        out += access.check_access(inputs.access, lease_exists=exists)
    if inputs.nodes is not None:
        out += health.check_nodes_ready(inputs.nodes)
    if inputs.pods is not None:
        out += health.check_control_plane_pods(inputs.pods)
    out += health.check_etcd(inputs.etcd)
    out += health.check_lease(
        inputs.lease, inputs.now, own_run_id=options.own_run_id, break_lock=options.break_lock
    )
    if inputs.pods is not None and inputs.pdbs is not None:
        out += drainability.check_drainability(
            inputs.pods,
            inputs.pdbs,
            drain_nodes,
            options.drain,
            missing_daemonsets=inputs.missing_daemonsets,
        )
    out += removed_apis.check_removed_apis(
        removed_table,
        current,
        hops,
        requests=inputs.deprecated_requests,
        objects=inputs.applied_objects,
        unchecked=inputs.removed_api_unchecked,
    )
    out += kubelet.check_kubelet_configmap(
        inputs.kubelet_configmap, strict=options.strict, harden=options.harden_kubelet
    )
    for problem in inputs.problems:
        out.append(
            Finding(
                "PREFLIGHT_INCOMPLETE",
                Severity.WARNING,
                f"preflight could not read {problem}",
                None,
                "check the API server and our permissions (upgrader rbac); the checks that "
                "need it were skipped",
            )
        )
    return out


def preflight_findings(
    facts: Facts,
    inputs: PreflightInputs | None,
    *,
    current: KubeVersion,
    target: KubeVersion,
    hops: Sequence[KubeVersion],
    upgrade_nodes: Sequence[str],
    drain_nodes: Sequence[str],
    now: datetime,
    options: CheckOptions = CheckOptions(),
    removed_table: Sequence[removed_apis.RemovedApi] = (),
) -> list[Finding]:
    """All preflight findings for a plan going ``current`` -> ``hops`` -> ``target``."""
    out = facts_findings(
        facts,
        target=target,
        upgrade_nodes=upgrade_nodes,
        now=inputs.now if inputs is not None else now,
        options=options,
    )
    out += runtime.check_runtime_support(
        facts,
        target,
        nodes=upgrade_nodes,
        kubelet_configmap=inputs.kubelet_configmap if inputs is not None else None,
    )
    if inputs is not None:
        out += cluster_findings(
            inputs,
            current=current,
            hops=hops,
            drain_nodes=drain_nodes,
            options=options,
            removed_table=removed_table,
        )
    return out
