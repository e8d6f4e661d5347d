"""The resource types the lab API server serves, as data.

Owns the one table of group/version/plural/kind/scope/verbs/subresources that discovery,
routing, RBAC, tables and the store all read. Must not: hold state or do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str  # "status", "eviction"
    kind: str  # response kind
    group: str
    version: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    # Field labels the real server accepts in fieldSelector besides metadata.name/namespace.
    field_labels: tuple[str, ...] = ()
    has_status: bool = True  # status is a subresource: main-resource writes keep old status
    generation: bool = False  # metadata.generation moves on spec changes

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods`` / ``deployments.apps`` as in the real server's error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Pod`` / ``Deployment.apps`` as in "... is invalid" messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def sub(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None


def _status(group: str, version: str, kind: str) -> Subresource:
    return Subresource("status", kind, group, version, ("get", "patch", "update"))


# ``kubectl scale`` reads and patches an autoscaling/v1 Scale (apps/v1 deployments and
# replicasets serve it; kubernetes/kubernetes pkg/registry/apps/deployment/storage).
SCALE = Subresource("scale", "Scale", "autoscaling", "v1", ("get", "patch", "update"))


def _workload(kind: str, short_name: str, *more: Subresource) -> ResourceType:
    """An apps/v1 workload: namespaced, in category ``all``, with a status subresource
    (and ``more``), its generation moving on spec changes."""
    return ResourceType(
        "apps",
        "v1",
        f"{kind.lower()}s",
        kind.lower(),
        kind,
        True,
        short_names=(short_name,),
        categories=("all",),
        subresources=(_status("apps", "v1", kind), *more),
        generation=True,
    )


def _review(group: str, kind: str) -> ResourceType:
    """A cluster-wide v1 review: only created, its object computed per request."""
    return ResourceType(
        group, "v1", f"{kind.lower()}s", kind.lower(), kind, False, ("create",), has_status=False
    )


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("create", "delete", "get", "list", "patch", "update", "watch"),
        short_names=("ns",),
        subresources=(_status("", "v1", "Namespace"),),
        field_labels=("status.phase",),
    ),
    ResourceType(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        False,
        short_names=("no",),
        subresources=(_status("", "v1", "Node"),),
        field_labels=("spec.unschedulable",),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        short_names=("po",),
        categories=("all",),
        subresources=(
            Subresource("eviction", "Eviction", "policy", "v1", ("create",)),
            Subresource("log", "Pod", "", "v1", ("get",)),
            _status("", "v1", "Pod"),
        ),
        field_labels=_POD_FIELDS,
    ),
    ResourceType(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        True,
        short_names=("cm",),
        has_status=False,
    ),
    ResourceType(
        "",
        "v1",
        "events",
        "event",
        "Event",
        True,
        short_names=("ev",),
        has_status=False,
        field_labels=_EVENT_FIELDS,
    ),
    _workload("Deployment", "deploy", SCALE),
    _workload("ReplicaSet", "rs", SCALE),
    _workload("DaemonSet", "ds"),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        True,
        short_names=("pdb",),
        subresources=(_status("policy", "v1", "PodDisruptionBudget"),),
        generation=True,
    ),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        True,
        has_status=False,
    ),
    _review("authorization.k8s.io", "SelfSubjectAccessReview"),
    _review("authorization.k8s.io", "SelfSubjectRulesReview"),
    _review("authentication.k8s.io", "SelfSubjectReview"),
)

# Resources whose objects are computed per request, never stored.
VIRTUAL = frozenset({"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"})

BY_PLURAL: dict[str, ResourceType] = {r.plural: r for r in RESOURCES}
BY_KIND: dict[str, ResourceType] = {r.kind: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    r = BY_PLURAL.get(plural)
    if r is None or r.group != group or r.version != version:
        return None
    return r


def group_versions() -> list[tuple[str, str]]:
    """Served (group, version) pairs in discovery order, core first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        gv = (r.group, r.version)
        if gv not in seen:
            seen.append(gv)
    return seen


def stored() -> tuple[ResourceType, ...]:
    return tuple(r for r in RESOURCES if r.plural not in VIRTUAL)
