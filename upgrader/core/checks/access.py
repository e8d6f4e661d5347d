"""Our own permissions: what a run asks the API for, checked before anything is touched.

Owns the one list of API accesses a run makes (:func:`required_access`): every verb on every
resource, with where (all namespaces or ``kube-system``) and why. From it come both the
SelfSubjectAccessReview questions :mod:`upgrader.preflight` asks and the least-privilege
rules ``upgrader rbac`` prints (:func:`rbac_rules`), so the two cannot drift; the lab's
``rbac.allow`` rules are generated from it too. :func:`check_access` turns the answers into
findings: a missing required permission is a blocker naming verb, group and resource.

``create`` on Leases in ``kube-system`` cannot be limited to one name by RBAC, so the printed
rules leave it out and ``upgrader rbac`` prints the Lease itself for the operator to apply:
a run needs ``create`` only while the Lease does not exist (:func:`check_access` is told).

Optional accesses (``required=False``) only feed checks that report what they could not
see: the ``/metrics`` endpoint (removed-API usage), the ``kubelet-config`` ConfigMap (what
``kubeadm upgrade`` writes to every node) and the lists of objects whose API versions a
release removes (last-applied annotations). Missing them is a warning.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from upgrader.core.model import Finding, Severity

KUBE_SYSTEM = "kube-system"
#: The run's Lease (``upgrader.kube.lease.LEASE_NAME``; a unit test keeps them equal).
LEASE_NAME = "upgrader-lock"
KUBEADM_CONFIG = "kubeadm-config"
KUBELET_CONFIG = "kubelet-config"
METRICS_PATH = "/metrics"

RBAC_FIX = (
    "bind the identity in the kubeconfig to the ClusterRole and Role that `upgrader rbac` "
    "prints (kubectl apply -f -)"
)


@dataclass(frozen=True)
class Access:
    """One thing the run does through the API. ``namespace`` empty: in every namespace (or a
    cluster-scoped resource). ``path`` set: a non-resource URL (``resource`` empty)."""

    verb: str
    resource: str = ""
    group: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    why: str = ""
    required: bool = True

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        """``create pods/eviction (group "") in every namespace``."""
        if self.path:
            return f"{self.verb} {self.path} (non-resource URL)"
        what = f'{self.verb} {self.full_resource} (group "{self.group}")'
        if self.name:
            what += f" named {self.name}"
        where = f" in namespace {self.namespace}" if self.namespace else " in every namespace"
        return what + where

    def review_spec(self) -> dict[str, Any]:
        """The ``spec`` of a SelfSubjectAccessReview (authorization.k8s.io/v1) asking it."""
        if self.path:
            return {"nonResourceAttributes": {"path": self.path, "verb": self.verb}}
        attrs: dict[str, Any] = {"verb": self.verb, "group": self.group, "resource": self.resource}
        for key, value in (
            ("subresource", self.subresource),
            ("namespace", self.namespace),
            ("name", self.name),
        ):
            if value:
                attrs[key] = value
        return {"resourceAttributes": attrs}


def _watch(resource: str, why: str, group: str = "") -> Access:
    """A watch: never required (without it, the waits it speeds up poll)."""
    return Access("watch", resource, group=group, why=why, required=False)


# The accesses of every run: nodes and pods (cordon, drain) ...
_NODES_AND_PODS = (
    Access("get", "nodes", why="read node state and readiness"),
    Access("list", "nodes", why="gather the cluster's nodes"),
    Access("patch", "nodes", why="cordon and uncordon nodes"),
    Access("list", "pods", why="find each node's pods and the control-plane mirror pods"),
    Access("get", "pods", why="see whether an evicted pod is gone"),
    Access("create", "pods", subresource="eviction", why="evict pods when draining"),
    _watch("nodes", "see a node turn Ready as it happens (without it, the wait polls)"),
    _watch(
        "pods",
        "see drained pods go and control-plane pods turn Ready as it happens "
        "(without it, the waits poll)",
    ),
)
_DELETE_PODS = Access(
    "delete",
    "pods",
    why="delete pods when draining (--disable-eviction, --drain-fallback delete)",
)
# ... then budgets, DaemonSets, the run lock's Lease, kubeadm's ConfigMaps, the metrics.
_CLUSTER = (
    Access(
        "list",
        "poddisruptionbudgets",
        group="policy",
        why="check drainability and report what blocks a drain",
    ),
    _watch(
        "poddisruptionbudgets",
        "see the budgets allow disruptions again after the run as it happens "
        "(without it, the wait polls)",
        group="policy",
    ),
    Access("get", "daemonsets", group="apps", why="recognise DaemonSet pods a drain skips"),
    Access(
        "get",
        "deployments",
        group="apps",
        namespace=KUBE_SYSTEM,
        name="coredns",
        why="check the CoreDNS addon image after the run",
        required=False,
    ),
    Access(
        "get",
        "leases",
        group="coordination.k8s.io",
        namespace=KUBE_SYSTEM,
        name=LEASE_NAME,
        why="read the run lock",
    ),
    Access(
        "create",
        "leases",
        group="coordination.k8s.io",
        namespace=KUBE_SYSTEM,
        why="create the run lock (only while the Lease does not exist: apply the Lease "
        "`upgrader rbac` prints instead)",
    ),
    Access(
        "update",
        "leases",
        group="coordination.k8s.io",
        namespace=KUBE_SYSTEM,
        name=LEASE_NAME,
        why="renew and release the run lock",
    ),
    Access(
        "get",
        "configmaps",
        namespace=KUBE_SYSTEM,
        name=KUBEADM_CONFIG,
        why="read the cluster version from kubeadm-config",
    ),
    Access(
        "get",
        "configmaps",
        namespace=KUBE_SYSTEM,
        name=KUBELET_CONFIG,
        why="see the kubelet configuration kubeadm upgrade writes to every node",
        required=False,
    ),
    Access(
        "get",
        path=METRICS_PATH,
        why="read apiserver_requested_deprecated_apis (removed-API usage)",
        required=False,
    ),
)


def required_access(
    *, disable_eviction: bool = False, scan: Iterable[tuple[str, str]] = ()
) -> tuple[Access, ...]:
    """Every access a run makes. ``disable_eviction``: the drain deletes pods instead of
    evicting them. ``scan``: (group, resource) lists for the removed-API check (optional)."""
    listed = tuple(
        Access(
            "list",
            resource,
            group=group,
            why="read last-applied-configuration annotations (removed-API usage)",
            required=False,
        )
        for group, resource in sorted(set(scan))
    )
    return (*_NODES_AND_PODS, *((_DELETE_PODS,) if disable_eviction else ()), *_CLUSTER, *listed)


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class AccessResult:
    """The answer to one question: ``allowed`` None when the review itself failed."""

    access: Access
    allowed: bool | None
    detail: str | None = None  # the review's reason / evaluationError, or the API error


def creates_lease(a: Access) -> bool:
    """The one access a run needs only while its Lease does not exist yet."""
    return a.verb == "create" and a.resource == "leases" and a.namespace == KUBE_SYSTEM


def check_access(
    results: Sequence[AccessResult], *, lease_exists: bool | None = None
) -> list[Finding]:
    """A finding per access that is not allowed (or could not be asked). ``lease_exists``
    True: creating the Lease is not needed (the operator applied the Lease that
    ``upgrader rbac`` prints, or an earlier run created it), so its answer is ignored."""
    return [
        _refused(r)
        for r in results
        if not (r.allowed is True or (lease_exists and creates_lease(r.access)))
    ]


def _refused(r: AccessResult) -> Finding:
    """The finding for an access not allowed (or not asked): a blocker when it is required."""
    a = r.access
    detail = f" ({r.detail})" if r.detail else ""
    if r.allowed is None:
        return Finding(
            "PERMISSION_UNKNOWN",
            Severity.WARNING,
            f"could not ask whether we may {a.describe()}: {a.why}{detail}",
            fix="check the kubeconfig's identity can create selfsubjectaccessreviews",
        )
    if a.required:
        return Finding(
            "PERMISSION_MISSING",
            Severity.BLOCKER,
            f"not allowed to {a.describe()}: needed to {a.why}{detail}",
            fix=RBAC_FIX,
        )
    return Finding(
        "PERMISSION_MISSING_OPTIONAL",
        Severity.WARNING,
        f"not allowed to {a.describe()}: cannot {a.why}{detail}",
        fix=RBAC_FIX,
    )


# --------------------------------------------------------------------------- RBAC rules


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule; ``namespace`` empty for the ClusterRole, else the Role's."""

    namespace: str
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def policy_rule(self) -> dict[str, Any]:
        """The rule as Kubernetes writes it (``apiGroups``, ``resources``, ``verbs``...)."""
        if self.non_resource_urls:
            return {"nonResourceURLs": list(self.non_resource_urls), "verbs": list(self.verbs)}
        d: dict[str, Any] = {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
        }
        if self.resource_names:
            d["resourceNames"] = list(self.resource_names)
        d["verbs"] = list(self.verbs)
        return d


_VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")


def _verbs(vs: Iterable[str]) -> tuple[str, ...]:
    s = set(vs)
    return tuple(v for v in _VERB_ORDER if v in s) + tuple(sorted(s - set(_VERB_ORDER)))


def rbac_rules(accesses: Sequence[Access]) -> tuple[Rule, ...]:
    """The least-privilege rules granting exactly ``accesses``: one rule per (scope, group,
    resource, name), verbs merged; ``create`` never carries a resource name (RBAC cannot
    restrict create by name), so it gets a rule of its own."""
    keyed: dict[tuple[str, str, str, str, str], set[str]] = {}
    for a in accesses:
        name = "" if a.verb == "create" else a.name
        key = (a.namespace, a.path, a.group, a.full_resource, name)
        keyed.setdefault(key, set()).add(a.verb)
    rules: list[Rule] = []
    for (ns, path, group, resource, name), verbs in keyed.items():
        if path:
            rules.append(Rule(ns, _verbs(verbs), non_resource_urls=(path,)))
        else:
            rules.append(
                Rule(
                    ns,
                    _verbs(verbs),
                    api_groups=(group,),
                    resources=(resource,),
                    resource_names=(name,) if name else (),
                )
            )
    # Merge named rules that differ only in their names (same scope, group, resource, verbs).
    named: dict[Rule, list[str]] = {}
    for r in rules:
        shape = Rule(r.namespace, r.verbs, r.api_groups, r.resources, (), r.non_resource_urls)
        named.setdefault(shape, [])
        named[shape].extend(r.resource_names or ("",))
    rules = []
    for shape, names in named.items():
        if "" in names:  # an unnamed rule covers every name
            rules.append(shape)
        else:
            rules.append(
                Rule(
                    shape.namespace,
                    shape.verbs,
                    shape.api_groups,
                    shape.resources,
                    tuple(dict.fromkeys(names)),
                    shape.non_resource_urls,
                )
            )
    # Merge rules that differ only in their resources (same scope, group, names, verbs).
    merged: dict[Rule, list[str]] = {}
    for r in rules:
        shape = Rule(
            r.namespace,
            r.verbs,
            api_groups=r.api_groups,
            resource_names=r.resource_names,
            non_resource_urls=r.non_resource_urls,
        )
        merged.setdefault(shape, []).extend(r.resources)
    return tuple(
        Rule(
            shape.namespace,
            shape.verbs,
            api_groups=shape.api_groups,
            resources=tuple(dict.fromkeys(resources)),
            resource_names=shape.resource_names,
            non_resource_urls=shape.non_resource_urls,
        )
        for shape, resources in merged.items()
    )


def lab_allow_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The same rules in the lab spec's ``rbac.allow`` form (``group``, ``namespaces``,
    ``resourceNames``). Non-resource URLs are left out: the lab answers those itself."""
    out: list[dict[str, Any]] = []
    for r in rules:
        if r.non_resource_urls:
            continue
        d: dict[str, Any] = {
            "verbs": list(r.verbs),
            "group": r.api_groups[0] if r.api_groups else "",
            "resources": list(r.resources),
        }
        if r.namespace:
            d["namespaces"] = [r.namespace]
        if r.resource_names:
            d["resourceNames"] = list(r.resource_names)
        out.append(d)
    return out
