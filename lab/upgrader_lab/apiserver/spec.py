"""The parts of the resolved lab spec (``DIR/spec.json``) the API server reads, as values.

Owns reading and validating ``spec.json`` for the API server: nodes, workloads and their
PDBs, delays, API faults (``faults[].api``) and the ``rbac`` rules. Missing optional keys
get the lab defaults, so a hand-written spec works too. Bad input raises ``ConfigError``
naming the file and field. Also owns reading a spec file's text (:func:`read_spec_text`,
shared with :mod:`upgrader_lab.spec`). Must not: write anything, or know about HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.core.versions import KubeVersion, VersionError
from upgrader.errors import ConfigError

IntOrStr = int | str


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str  # "control-plane" | "worker"
    os_family: str
    kubelet: str
    control_plane: str | None
    cordoned: bool
    address: str
    never_ready: bool
    runtime: str
    labels: tuple[tuple[str, str], ...] = ()  # extra Node labels, sorted by key
    flavor: str = ""  # debian | rhel | fedora | kubespray ("" = by os_family)

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


@dataclass(frozen=True)
class PdbSpec:
    name: str
    min_available: IntOrStr | None
    max_unavailable: IntOrStr | None


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str  # Deployment | DaemonSet | Pod
    namespace: str
    name: str
    replicas: int
    pdbs: tuple[PdbSpec, ...]
    empty_dir: bool
    grace_period: int
    image: str | None
    node: str | None  # Pod only


@dataclass(frozen=True)
class Delays:
    kubelet_ready: float
    pod_termination: float
    pod_startup: float


@dataclass(frozen=True)
class ApiFault:
    index: int  # position in spec.faults (the persistent counter's key)
    method: str  # "GET" ... or "*"
    path_prefix: str
    times: int
    status: int | None
    timeout: float | None
    retry_after: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and path.startswith(self.path_prefix)


@dataclass(frozen=True)
class RbacRule:
    verbs: tuple[str, ...]
    groups: tuple[str, ...]
    resources: tuple[str, ...]
    namespaces: tuple[str, ...]  # empty = every namespace
    resource_names: tuple[str, ...]  # empty = every name


@dataclass(frozen=True)
class LabSpec:
    cluster_name: str
    version: str
    nodes: tuple[NodeSpec, ...]
    workloads: tuple[WorkloadSpec, ...]
    delays: Delays
    api_faults: tuple[ApiFault, ...]
    rbac: tuple[RbacRule, ...] | None  # None = everything allowed
    etcd_external: tuple[str, ...] = ()  # spec `etcd: external`: kubeadm-config's endpoints
    seed_lease: bool = False  # spec `rbac.lease`: the run's Lease exists from the start
    image_repository: str = "registry.k8s.io"  # kubeadm-config imageRepository

    def node(self, name: str) -> NodeSpec | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {msg}")

    def str_(self, d: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        v = d.get(key, default)
        if not isinstance(v, str) or not v:
            raise self.fail(f"{path}.{key}" if path else key, "must be a non-empty string")
        return v

    def opt_str(self, d: Mapping[str, Any], key: str, path: str) -> str | None:
        return None if d.get(key) is None else self.str_(d, key, path)

    def choice(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        choices: tuple[str, ...],
        default: str | None,
        msg: str,
    ) -> str:
        v = d.get(key, default)
        if v not in choices:
            raise self.fail(f"{path}.{key}", msg)
        return str(v)

    def version(self, d: Mapping[str, Any], key: str, path: str, default: str | None) -> str:
        v = d.get(key, default)
        where = f"{path}.{key}" if path else key
        if not isinstance(v, str):
            raise self.fail(where, "must be a version string like v1.28.4")
        try:
            return str(KubeVersion.parse(v))
        except VersionError as e:
            raise self.fail(where, str(e)) from None

    def bool_(self, d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        v = d.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(f"{path}.{key}", "must be true or false")
        return v

    def num(self, d: Mapping[str, Any], key: str, path: str, default: float) -> float:
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise self.fail(f"{path}.{key}" if path else key, "must be a number >= 0")
        return float(v)

    def int_(self, d: Mapping[str, Any], key: str, path: str, default: int) -> int:
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise self.fail(f"{path}.{key}", "must be an integer >= 0")
        return v

    def strs(self, v: Any, path: str) -> tuple[str, ...]:
        if isinstance(v, str):
            return (v,)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(path, "must be a list of strings")
        return tuple(v)


def _int_or_str(ctx: _Ctx, v: Any, path: str) -> IntOrStr | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ctx.fail(path, "must be an integer or a percentage")
    if isinstance(v, int) and v >= 0:
        return v
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit():
        return v
    raise ctx.fail(path, "must be an integer >= 0 or a percentage like '50%'")


def _nodes(ctx: _Ctx, raw: Any, cluster_version: str) -> tuple[NodeSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("nodes", "must be a non-empty list")
    out: list[NodeSpec] = []
    seen: set[str] = set()
    for i, n in enumerate(raw):
        p = f"nodes[{i}]"
        if not isinstance(n, Mapping):
            raise ctx.fail(p, "must be a mapping")
        name = ctx.str_(n, "name", p)
        if name in seen:
            raise ctx.fail(f"{p}.name", f"duplicate node name {name!r}")
        seen.add(name)
        role = ctx.choice(
            n,
            "role",
            p,
            ("control-plane", "worker"),
            "worker",
            "must be 'control-plane' or 'worker'",
        )
        kubelet = ctx.version(n, "kubelet", p, cluster_version)
        cp: str | None = None
        if role == "control-plane":
            cp = ctx.version(n, "control_plane", p, n.get("kubeadm", kubelet))
        raw_labels = n.get("labels") or {}
        if not isinstance(raw_labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_labels.items()
        ):
            raise ctx.fail(f"{p}.labels", "must be a mapping of strings to strings")
        os_family = ctx.choice(
            n, "os_family", p, ("debian", "rhel"), "debian", "must be 'debian' or 'rhel'"
        )
        out.append(
            NodeSpec(
                name=name,
                role=role,
                os_family=os_family,
                flavor=str(n.get("flavor") or os_family),
                kubelet=kubelet,
                control_plane=cp,
                cordoned=ctx.bool_(n, "cordoned", p, False),
                address=ctx.str_(n, "address", p, f"127.61.0.{i + 2}"),
                never_ready=ctx.bool_(n, "never_ready", p, False),
                runtime=ctx.str_(n, "runtime", p, "containerd://1.7.2"),
                labels=tuple(sorted(raw_labels.items())),
            )
        )
    return tuple(out)


def _pdbs(ctx: _Ctx, raw: Any, name: str, p: str) -> tuple[PdbSpec, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out: list[PdbSpec] = []
    for j, d in enumerate(items):
        q = f"{p}.pdb" if not isinstance(raw, list) else f"{p}.pdb[{j}]"
        if not isinstance(d, Mapping):
            raise ctx.fail(q, "must be a mapping with minAvailable or maxUnavailable")
        mn = _int_or_str(ctx, d.get("minAvailable", d.get("min_available")), f"{q}.minAvailable")
        mx = _int_or_str(
            ctx, d.get("maxUnavailable", d.get("max_unavailable")), f"{q}.maxUnavailable"
        )
        if (mn is None) == (mx is None):
            raise ctx.fail(q, "needs exactly one of minAvailable or maxUnavailable")
        default_name = name if j == 0 else f"{name}-{j + 1}"
        out.append(PdbSpec(ctx.str_(d, "name", q, default_name), mn, mx))
    return tuple(out)


def _workloads(ctx: _Ctx, raw: Any, nodes: tuple[NodeSpec, ...]) -> tuple[WorkloadSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.fail("workloads", "must be a list")
    names = {n.name for n in nodes}
    out: list[WorkloadSpec] = []
    seen: set[tuple[str, str, str]] = set()
    for i, w in enumerate(raw):
        p = f"workloads[{i}]"
        if not isinstance(w, Mapping):
            raise ctx.fail(p, "must be a mapping")
        kind = ctx.choice(
            w,
            "kind",
            p,
            ("Deployment", "DaemonSet", "Pod"),
            None,
            "must be Deployment, DaemonSet or Pod",
        )
        name = ctx.str_(w, "name", p)
        ns = ctx.str_(w, "namespace", p, "default")
        if (kind, ns, name) in seen:
            raise ctx.fail(f"{p}.name", f"duplicate {kind} {ns}/{name}")
        seen.add((kind, ns, name))
        node = w.get("node")
        if kind == "Pod" and (not isinstance(node, str) or node not in names):
            raise ctx.fail(f"{p}.node", "must name a node of the spec")
        image = ctx.opt_str(w, "image", p)
        out.append(
            WorkloadSpec(
                kind=kind,
                namespace=ns,
                name=name,
                replicas=ctx.int_(w, "replicas", p, 1),
                pdbs=_pdbs(ctx, w.get("pdb", w.get("pdbs")), name, p),
                empty_dir=ctx.bool_(w, "empty_dir", p, False),
                grace_period=ctx.int_(w, "grace_period", p, 30),
                image=image,
                node=node if kind == "Pod" else None,
            )
        )
    return tuple(out)


def _faults(ctx: _Ctx, raw: Any) -> tuple[ApiFault, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.fail("faults", "must be a list")
    out: list[ApiFault] = []
    for i, f in enumerate(raw):
        if not isinstance(f, Mapping) or "api" not in f:
            continue  # node faults belong to the node tools
        p = f"faults[{i}].api"
        a = f["api"]
        if not isinstance(a, Mapping):
            raise ctx.fail(p, "must be a mapping")
        method = str(a.get("method", "*")).upper()
        prefix = ctx.str_(a, "path_prefix", p, "/")
        if not prefix.startswith("/"):
            raise ctx.fail(f"{p}.path_prefix", "must start with '/'")
        times = ctx.int_(a, "times", p, 1)
        status = a.get("status")
        timeout = a.get("timeout")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
        ):
            raise ctx.fail(f"{p}.status", "must be an HTTP error code (400-599)")
        if timeout is not None:
            timeout = ctx.num(a, "timeout", p, 0.0)
        if (status is None) == (timeout is None):
            raise ctx.fail(p, "needs exactly one of status or timeout")
        ra = a.get("retry_after")
        if ra is not None and (isinstance(ra, bool) or not isinstance(ra, int) or ra < 0):
            raise ctx.fail(f"{p}.retry_after", "must be an integer >= 0")
        out.append(ApiFault(i, method, prefix, times, status, timeout, ra))
    return tuple(out)


def _rbac(ctx: _Ctx, raw: Any) -> tuple[RbacRule, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("allow", []), list):
        raise ctx.fail("rbac", "must be null or {allow: [rules]}")
    rules: list[RbacRule] = []
    for i, r in enumerate(raw.get("allow", [])):
        p = f"rbac.allow[{i}]"
        if not isinstance(r, Mapping):
            raise ctx.fail(p, "must be a mapping")
        groups = r.get("groups", r.get("group", r.get("apiGroups", "")))
        rules.append(
            RbacRule(
                verbs=ctx.strs(r.get("verbs", []), f"{p}.verbs"),
                groups=ctx.strs(groups, f"{p}.group"),
                resources=ctx.strs(r.get("resources", []), f"{p}.resources"),
                namespaces=ctx.strs(r.get("namespaces", []), f"{p}.namespaces"),
                resource_names=ctx.strs(
                    r.get("resourceNames", r.get("resource_names", [])), f"{p}.resourceNames"
                ),
            )
        )
    return tuple(rules)


def _seed_lease(ctx: _Ctx, raw: Any) -> bool:
    value = raw.get("lease", False) if isinstance(raw, Mapping) else False
    if not isinstance(value, bool):
        raise ctx.fail("rbac.lease", "must be true or false")
    return value


def parse_spec(data: Any, source: str = "spec.json") -> LabSpec:
    ctx = _Ctx(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping")
    version = ctx.version(data, "version", "", "v1.27.8")
    nodes = _nodes(ctx, data.get("nodes"), version)
    d = data.get("delays") or {}
    if not isinstance(d, Mapping):
        raise ctx.fail("delays", "must be a mapping")
    pod_termination = ctx.num(d, "pod_termination", "delays", 0.2)
    delays = Delays(
        kubelet_ready=ctx.num(d, "kubelet_ready", "delays", 1.0),
        pod_termination=pod_termination,
        pod_startup=ctx.num(d, "pod_startup", "delays", pod_termination),
    )
    return LabSpec(
        cluster_name=ctx.str_(data, "cluster_name", "", "lab"),
        version=version,
        nodes=nodes,
        workloads=_workloads(ctx, data.get("workloads"), nodes),
        delays=delays,
        api_faults=_faults(ctx, data.get("faults")),
        rbac=_rbac(ctx, data.get("rbac")),
        seed_lease=_seed_lease(ctx, data.get("rbac")),
        etcd_external=_etcd_external(ctx, data.get("etcd", "local")),
        image_repository=ctx.str_(data, "image_repository", "", "registry.k8s.io"),
    )


# Endpoints of the simulated external etcd cluster (TEST-NET-1: nothing answers there).
EXTERNAL_ETCD_ENDPOINTS = (
    "https://192.0.2.11:2379",
    "https://192.0.2.12:2379",
    "https://192.0.2.13:2379",
)


def _etcd_external(ctx: _Ctx, raw: Any) -> tuple[str, ...]:
    if raw in (None, "local"):
        return ()
    if raw == "external":
        return EXTERNAL_ETCD_ENDPOINTS
    raise ctx.fail("etcd", f"{raw!r} is not one of local, external")


def read_spec_text(path: Path) -> str:
    """The text of a spec file (``spec.json``, or the YAML a tester wrote), or one
    ``ConfigError`` line naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None


def load_spec(path: Path) -> LabSpec:
    text = read_spec_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON: {e.msg} (line {e.lineno})") from None
    return parse_spec(data, str(path))
