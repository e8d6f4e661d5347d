"""``upgrader rbac``: least-privilege RBAC objects for the identity upgrader runs as.

Owns rendering the rules of :func:`upgrader.core.checks.access.rbac_rules` (the same list
the preflight's SelfSubjectAccessReviews ask about, so what we print is exactly what a run
needs) as Kubernetes YAML: a ClusterRole and ClusterRoleBinding for the cluster-wide part
(nodes, pods, evictions, PodDisruptionBudgets, DaemonSets, ``/metrics``, and ``list`` on
the kinds whose API versions releases since :data:`SCAN_FROM` removed), and a Role and
RoleBinding in ``kube-system`` for the namespaced part (the ``upgrader-lock`` Lease, the
``kubeadm-config`` and ``kubelet-config`` ConfigMaps, all by name), and the free Lease
itself, so that the identity never needs ``create`` on Leases (which RBAC cannot limit to
one name; docs/RBAC.md lists what RBAC cannot narrow further). Also
:func:`lab_rules`, the same rules in the lab spec's ``rbac.allow`` form.

Must not: talk to the cluster, or print (the CLI prints what :func:`render_rbac` returns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from upgrader.core.checks import access as acc
from upgrader.core.checks import removed_apis as ra
from upgrader.errors import ConfigError

NAME = "upgrader"
#: Removed-API scans are granted for releases from this minor on (older clusters are
#: long out of support; their scans report what they could not list).
SCAN_FROM = (1, 25)

_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class Subject:
    kind: str  # "User" | "Group" | "ServiceAccount"
    name: str
    namespace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "ServiceAccount":
            return {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}
        return {"kind": self.kind, "apiGroup": "rbac.authorization.k8s.io", "name": self.name}

    def describe(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def subject_from(
    user: str | None = None, serviceaccount: str | None = None, group: str | None = None
) -> Subject:
    """The one subject the flags name (default: User ``upgrader``). Raises ConfigError."""
    given = [x for x in (user, serviceaccount, group) if x is not None]
    if len(given) > 1:
        raise ConfigError("give at most one of --user, --serviceaccount and --group")
    if serviceaccount is not None:
        ns, sep, name = serviceaccount.partition("/")
        if not sep or not _DNS_LABEL.match(ns) or not _DNS_SUBDOMAIN.match(name):
            raise ConfigError(
                f"--serviceaccount: {serviceaccount!r} is not NAMESPACE/NAME "
                "(lowercase DNS names, e.g. kube-system/upgrader)"
            )
        return Subject("ServiceAccount", name, ns)
    for flag, kind, value in (("--user", "User", user), ("--group", "Group", group)):
        if value is not None:
            if not value.strip() or any(c in value for c in "\n\r\t"):
                raise ConfigError(f"{flag}: {value!r} is not a usable name")
            return Subject(kind, value)
    return Subject("User", NAME)


def scan_resources(table: tuple[ra.RemovedApi, ...] | None = None) -> list[tuple[str, str]]:
    """(group, resource) the removed-API check may list, for removals since SCAN_FROM."""
    rows = table if table is not None else ra.load_removed_apis()
    out: list[tuple[str, str]] = []
    for r in rows:
        if r.removed_in < SCAN_FROM:
            continue
        group = (
            r.replacement.split("/", 1)[0] if r.replacement and "/" in r.replacement else r.group
        )
        if (group, r.resource) not in out:
            out.append((group, r.resource))
    return out


def rules(*, disable_eviction: bool = False) -> tuple[acc.Rule, ...]:
    """The least-privilege rules (cluster-wide ones have an empty namespace). No ``create``
    on Leases: RBAC cannot limit it to one name, so the Lease is printed instead."""
    accesses = acc.required_access(disable_eviction=disable_eviction, scan=scan_resources())
    return acc.rbac_rules([a for a in accesses if not acc.creates_lease(a)])


def lease_object() -> dict[str, Any]:
    """The run's Lease, free, for the operator to create once (``kubectl apply`` leaves an
    existing one, and its holder, as it is: the spec is empty)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": acc.LEASE_NAME,
            "namespace": acc.KUBE_SYSTEM,
            "labels": {"app.kubernetes.io/name": "upgrader"},
        },
        "spec": {},
    }


def lab_rules(*, disable_eviction: bool = False) -> list[dict[str, Any]]:
    """The same rules as a lab spec's ``rbac.allow`` list."""
    return acc.lab_allow_rules(rules(disable_eviction=disable_eviction))


def render_rbac(subject: Subject, *, name: str = NAME, disable_eviction: bool = False) -> str:
    """ClusterRole + ClusterRoleBinding + Role + RoleBinding + the run's Lease (kube-system),
    as one YAML stream ready for ``kubectl apply -f -``."""
    if not _DNS_SUBDOMAIN.match(name):
        raise ConfigError(f"--name: {name!r} is not a valid RBAC object name")
    rs = rules(disable_eviction=disable_eviction)
    cluster = [r.policy_rule() for r in rs if not r.namespace]
    namespaced = [r.policy_rule() for r in rs if r.namespace == acc.KUBE_SYSTEM]
    labels = {"app.kubernetes.io/name": "upgrader"}
    group = "rbac.authorization.k8s.io"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": cluster,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject.to_dict()],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": acc.KUBE_SYSTEM, "labels": labels},
            "rules": namespaced,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": acc.KUBE_SYSTEM, "labels": labels},
            "roleRef": {"apiGroup": group, "kind": "Role", "name": name},
            "subjects": [subject.to_dict()],
        },
        lease_object(),
    ]
    head = (
        f"# Least-privilege RBAC for upgrader, bound to {subject.describe()}.\n"
        "# Cluster-wide: read/watch/cordon nodes, list/get/watch pods, evict pods"
        + (", delete pods (--disable-eviction)" if disable_eviction else "")
        + ",\n# list/watch PodDisruptionBudgets (without watch, the waits poll), get DaemonSets,\n"
        "# GET /metrics, list kinds whose API versions releases remove.\n"
        f"# In {acc.KUBE_SYSTEM}: the {acc.LEASE_NAME} Lease (get/update by name; the Lease\n"
        "# itself is created below, so the identity needs no create right: RBAC cannot\n"
        f"# limit create to one name), the {acc.KUBEADM_CONFIG} and {acc.KUBELET_CONFIG}\n"
        "# ConfigMaps (get by name). Not limitable by RBAC: patch nodes allows any field\n"
        "# (labels, taints), not only spec.unschedulable; see docs/RBAC.md for the\n"
        "# ValidatingAdmissionPolicy that limits it.\n"
        "# Apply with: kubectl apply -f -\n"
    )
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
    return head + "---\n" + body
