"""Server-side printing: ``meta.k8s.io/v1`` Table responses for ``kubectl get``.

Owns the columns and cell values of the kinds the lab serves, matching the real server's
printers (``NAME STATUS ROLES AGE VERSION`` for nodes, ``NAME READY STATUS RESTARTS AGE``
for pods, ...), and the Age formatting (``duration.HumanDuration``). Pure; must not do I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upgrader_lab.apiserver.objects import node_ip, node_ready, parse_ts
from upgrader_lab.apiserver.resources import ResourceType

Json = dict[str, Any]

_NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is "
    "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


_DAY = 24 * 3600
_YEAR = 365 * _DAY
# k8s.io/apimachinery/pkg/util/duration.HumanDuration as data, (limit, size, unit, small) per
# step: below ``limit`` seconds, the whole ``size``-second units, then the rest in ``small``
# (its seconds, its unit) unless that is 0; ``small`` None: never. Past the last: years.
_DURATION_STEPS: tuple[tuple[int, int, str, tuple[int, str] | None], ...] = (
    (120, 1, "s", None),
    (10 * 60, 60, "m", (1, "s")),
    (180 * 60, 60, "m", None),
    (8 * 3600, 3600, "h", (60, "m")),
    (48 * 3600, 3600, "h", None),
    (8 * _DAY, _DAY, "d", (3600, "h")),
    (2 * _YEAR, _DAY, "d", None),
    (8 * _YEAR, _YEAR, "y", (_DAY, "d")),
)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    size, unit, small = next(
        ((size, unit, small) for limit, size, unit, small in _DURATION_STEPS if s < limit),
        (_YEAR, "y", None),
    )
    whole = f"{s // size}{unit}"
    rest = s % size // small[0] if small is not None else 0
    return f"{whole}{rest}{small[1]}" if small is not None and rest else whole


def age(obj: Json, now: float) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        return human_duration(now - parse_ts(str(created)))
    except ValueError:
        return "<unknown>"


def _col(name: str, desc: str, priority: int = 0, ctype: str = "string", fmt: str = "") -> Json:
    return {"name": name, "type": ctype, "format": fmt, "description": desc, "priority": priority}


def _int(name: str, desc: str) -> Json:
    return _col(name, desc, ctype="integer")


NAME = _col("Name", _NAME_DESC, fmt="name")
AGE = _col("Age", _AGE_DESC)

# --------------------------------------------------------------------------- per kind


def _node_status(n: Json) -> str:
    s = "Ready" if node_ready(n) == "True" else "NotReady"
    if (n.get("spec") or {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def _node_roles(n: Json) -> str:
    labels = (n.get("metadata") or {}).get("labels") or {}
    roles = set()
    for k, v in labels.items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k.split("/", 1)[1]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) if roles else "<none>"


def _node_row(n: Json, now: float) -> list[Any]:
    info = (n.get("status") or {}).get("nodeInfo") or {}
    ext = next(
        (
            a.get("address")
            for a in (n.get("status") or {}).get("addresses") or []
            if a.get("type") == "ExternalIP"
        ),
        "<none>",
    )
    return [
        n["metadata"]["name"],
        _node_status(n),
        _node_roles(n),
        age(n, now),
        info.get("kubeletVersion", ""),
        node_ip(n) or "<none>",
        ext,
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


NODE_COLUMNS = [
    NAME,
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    AGE,
    _col("Version", "Kubelet Version reported by the node."),
    _col(
        "Internal-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
        1,
    ),
    _col(
        "External-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
        1,
    ),
    _col(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        1,
    ),
    _col(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        1,
    ),
    _col(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
        "containerd://1.4.2).",
        1,
    ),
]


def pod_status_reason(p: Json) -> str:
    """The STATUS column of ``kubectl get pods`` (printPod)."""
    st = p.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _pod_row(p: Json, now: float) -> list[Any]:
    st = p.get("status") or {}
    spec = p.get("spec") or {}
    statuses = st.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return [
        p["metadata"]["name"],
        f"{ready}/{total}",
        pod_status_reason(p),
        str(restarts),
        age(p, now),
        st.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


POD_COLUMNS = [
    NAME,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    AGE,
    _col(
        "IP",
        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
        "allocated.",
        1,
    ),
    _col(
        "Node",
        "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, "
        "the scheduler simply schedules this pod onto that node, assuming that it fits "
        "resource requirements.",
        1,
    ),
    _col(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
        "cannot be scheduled right away as preemption victims receive their graceful "
        "termination periods.",
        1,
    ),
    _col(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness.",
        1,
    ),
]


def _containers(obj: Json) -> tuple[str, str]:
    cs = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get("name")) for c in cs), ",".join(str(c.get("image")) for c in cs)


def _selector(obj: Json) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator")
        vals = ",".join(e.get("values") or [])
        parts.append(
            {
                "In": f"{e.get('key')} in ({vals})",
                "NotIn": f"{e.get('key')} notin ({vals})",
                "Exists": str(e.get("key")),
                "DoesNotExist": f"!{e.get('key')}",
            }.get(str(op), "")
        )
    return ",".join(parts) if parts else "<none>"


_WIDE = [
    _col("Containers", "Names of each container in the template.", 1),
    _col("Images", "Images referenced by each container in the template.", 1),
    _col(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be "
        "the ones affected by this deployment.",
        1,
    ),
]


def _workload_row(obj: Json, now: float, cells: list[Any]) -> list[Any]:
    """A workload's row: its name, the kind's own ``cells``, Age and the wide columns."""
    names, images = _containers(obj)
    return [obj["metadata"]["name"], *cells, age(obj, now), names, images, _selector(obj)]


def _status_counts(obj: Json, *keys: str) -> list[Any]:
    """The counters ``keys`` of ``obj``'s status, 0 where the controller has not set one."""
    st = obj.get("status") or {}
    return [st.get(k, 0) for k in keys]


def _workload_columns(*own: Json) -> list[Json]:
    """The columns of a workload kind: Name, the kind's ``own``, Age and the wide ones."""
    return [NAME, *own, AGE, *_WIDE]


def _deploy_row(d: Json, now: float) -> list[Any]:
    want = (d.get("spec") or {}).get("replicas", 1)
    ready, updated, available = _status_counts(
        d, "readyReplicas", "updatedReplicas", "availableReplicas"
    )
    return _workload_row(d, now, [f"{ready}/{want}", updated, available])


DEPLOY_COLUMNS = _workload_columns(
    _col("Ready", "Number of the pod with ready state"),
    _int(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired "
        "template spec.",
    ),
    _int(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this "
        "deployment.",
    ),
)


def _rs_row(r: Json, now: float) -> list[Any]:
    want = (r.get("spec") or {}).get("replicas", 1)
    return _workload_row(r, now, [want, *_status_counts(r, "replicas", "readyReplicas")])


RS_COLUMNS = _workload_columns(
    _int("Desired", "Replicas is the number of desired replicas."),
    _int("Current", "Replicas is the most recently observed number of replicas."),
    _int(
        "Ready",
        "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
    ),
)

_DS_COUNTS = (
    "desiredNumberScheduled",
    "currentNumberScheduled",
    "numberReady",
    "updatedNumberScheduled",
    "numberAvailable",
)


def _ds_row(d: Json, now: float) -> list[Any]:
    ns = (((d.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    node_selector = ",".join(f"{k}={v}" for k, v in sorted(ns.items())) or "<none>"
    return _workload_row(d, now, [*_status_counts(d, *_DS_COUNTS), node_selector])


DS_COLUMNS = _workload_columns(
    _int("Desired", "The total number of nodes that should be running the daemon pod."),
    _int(
        "Current",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the "
        "daemon pod.",
    ),
    _int(
        "Ready",
        "numberReady is the number of nodes that should be running the daemon pod and have one "
        "or more of the daemon pod running with a Ready Condition.",
    ),
    _int("Up-to-date", "The total number of nodes that are running updated daemon pod"),
    _int(
        "Available",
        "The number of nodes that should be running the daemon pod and have one or more of the "
        "daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    _col(
        "Node Selector",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector "
        "which must match a node's labels for the pod to be scheduled on that node.",
    ),
)


def _pdb_row(p: Json, now: float) -> list[Any]:
    spec = p.get("spec") or {}
    st = p.get("status") or {}
    return [
        p["metadata"]["name"],
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        st.get("disruptionsAllowed", 0),
        age(p, now),
    ]


PDB_COLUMNS = [
    NAME,
    _col(
        "Min Available",
        "The minimum number of pods that must be available simultaneously. This can be either an "
        'integer or a string specifying a percentage, e.g. "28%".',
    ),
    _col(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable. This can be either an integer or a "
        'string specifying a percentage, e.g. "28%".',
    ),
    _int("Allowed Disruptions", "Number of pod disruptions that are currently allowed."),
    AGE,
]


def _cm_row(c: Json, now: float) -> list[Any]:
    return [
        c["metadata"]["name"],
        len(c.get("data") or {}) + len(c.get("binaryData") or {}),
        age(c, now),
    ]


CM_COLUMNS = [NAME, _int("Data", "Data contains the configuration data."), AGE]


def _lease_row(lz: Json, now: float) -> list[Any]:
    holder = (lz.get("spec") or {}).get("holderIdentity")
    return [lz["metadata"]["name"], holder or "<none>", age(lz, now)]


LEASE_COLUMNS = [
    NAME,
    _col("Holder", "HolderIdentity contains the identity of the holder of a current lease."),
    AGE,
]


def _ns_row(n: Json, now: float) -> list[Any]:
    return [n["metadata"]["name"], (n.get("status") or {}).get("phase", "Active"), age(n, now)]


NS_COLUMNS = [NAME, _col("Status", "The status of the namespace"), AGE]


def _default_row(o: Json, now: float) -> list[Any]:
    return [o["metadata"]["name"], (o.get("metadata") or {}).get("creationTimestamp")]


DEFAULT_COLUMNS = [
    NAME,
    _col(
        "Created At",
        "CreationTimestamp is a timestamp representing the server time when this object was "
        "created.",
        fmt="date",
    ),
]

PRINTERS: dict[str, tuple[list[Json], Callable[[Json, float], list[Any]]]] = {
    "nodes": (NODE_COLUMNS, _node_row),
    "pods": (POD_COLUMNS, _pod_row),
    "deployments": (DEPLOY_COLUMNS, _deploy_row),
    "replicasets": (RS_COLUMNS, _rs_row),
    "daemonsets": (DS_COLUMNS, _ds_row),
    "poddisruptionbudgets": (PDB_COLUMNS, _pdb_row),
    "configmaps": (CM_COLUMNS, _cm_row),
    "leases": (LEASE_COLUMNS, _lease_row),
    "namespaces": (NS_COLUMNS, _ns_row),
}


def to_table(
    rt: ResourceType,
    objects: list[Json],
    now: float,
    include: str,
    list_meta: Json,
    api_version: str = "meta.k8s.io/v1",
) -> Json:
    """A Table of ``objects``; ``include`` is the includeObject parameter (None/Metadata/Object)."""
    columns, row = PRINTERS.get(rt.plural, (DEFAULT_COLUMNS, _default_row))
    rows: list[Json] = []
    for o in objects:
        r: Json = {"cells": row(o, now)}
        if include == "Object":
            r["object"] = {"kind": rt.kind, "apiVersion": rt.api_version, **o}
        elif include != "None":
            r["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata") or {},
            }
        rows.append(r)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    }
