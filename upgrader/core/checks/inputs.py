"""What the preflight checks read from the cluster, as one value.

Owns :class:`PreflightInputs`: the plain data :mod:`upgrader.preflight` reads through the
API and over SSH (SelfSubjectAccessReview answers, every Node, pod and PodDisruptionBudget,
the deprecated-API metric, last-applied annotations, the Lease, the kubelet-config
ConfigMap, ``etcdctl endpoint health`` per control-plane node) and hands to the pure
checks. ``None`` means "not read" (the check that needs it reports what it could not see);
``problems`` holds one line per read that failed.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from upgrader.core.checks.access import AccessResult
from upgrader.core.checks.health import CommandOutcome
from upgrader.core.checks.removed_apis import AppliedObject, DeprecatedRequest

Json = Mapping[str, Any]


@dataclass(frozen=True)
class PreflightInputs:
    now: datetime
    access: tuple[AccessResult, ...] | None = None
    nodes: tuple[Json, ...] | None = None  # Node objects
    pods: tuple[Json, ...] | None = None  # every pod of the cluster
    pdbs: tuple[Json, ...] | None = None  # every PodDisruptionBudget (policy/v1)
    missing_daemonsets: frozenset[tuple[str, str]] = frozenset()
    deprecated_requests: tuple[DeprecatedRequest, ...] | None = None
    applied_objects: tuple[AppliedObject, ...] | None = None
    removed_api_unchecked: tuple[str, ...] = ()
    etcd: Mapping[str, CommandOutcome] = field(default_factory=dict)
    lease: Json | None = None
    lease_read: bool = False  # the Lease was looked up (absent or not)
    kubelet_configmap: str | None = None  # data.kubelet of kube-system/kubelet-config
    problems: tuple[str, ...] = ()
