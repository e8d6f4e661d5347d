"""The values that flow between layers: facts, findings, steps and plans.

Owns the data shapes (and their JSON forms) that the gatherer produces, the planner
consumes and produces, the renderer prints and the executor runs. Everything is a
frozen dataclass; "changing" one means building a new one (``dataclasses.replace``).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BeforeValidator, Field, StrictStr

from upgrader.core.fields import built_from, field_values
from upgrader.core.problems import FileModel, Version, short, validate
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import StepKind
from upgrader.errors import ConfigError

if TYPE_CHECKING:
    from upgrader.core.workers import WorkerSelection

# --------------------------------------------------------------------------- findings


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One thing the operator should know. ``code`` is stable (documented in the README).

    ``override`` names the CLI flag that lets the run pass this blocker (``--force``,
    ``--allow-unsupported``, ...); ``None`` means nothing can override it.
    """

    code: str
    severity: Severity
    message: str
    node: str | None = None
    fix: str | None = None
    override: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "node": self.node,
            "message": self.message,
            "fix": self.fix,
            "override": self.override,
        }


# --------------------------------------------------------------------------- facts

ROLE_CONTROL_PLANE = "control-plane"
ROLE_WORKER = "worker"
ROLES = (ROLE_CONTROL_PLANE, ROLE_WORKER)


@dataclass(frozen=True)
class ControlPlaneVersions:
    """Versions of the control-plane components on one node (from mirror-pod image tags)."""

    apiserver: KubeVersion | None = None
    controller_manager: KubeVersion | None = None
    scheduler: KubeVersion | None = None
    etcd: str | None = None


@dataclass(frozen=True)
class PackageFact:
    """One installed package: ``kubeadm``, ``1.28.4-1.1``, held or not."""

    name: str
    version: str
    held: bool = False


@dataclass(frozen=True)
class NodeFacts:
    name: str
    role: str  # "control-plane" | "worker"
    address: str | None = None
    kubelet: KubeVersion | None = None  # API nodeInfo.kubeletVersion, else `kubelet --version`
    kubeadm: KubeVersion | None = None  # `kubeadm version -o short`
    kubectl: KubeVersion | None = None
    control_plane: ControlPlaneVersions | None = None
    ready: bool | None = None
    unschedulable: bool = False
    os_family: str | None = None  # "debian" | "rhel"
    package_manager: str | None = None  # "apt" | "dnf" | "yum" | "dnf5"
    packages: Mapping[str, PackageFact] = field(default_factory=dict)
    repo_minor: str | None = None  # "1.27": the minor the package repository points at
    repo_versions: tuple[str, ...] = ()  # kubeadm package versions the repository offers
    container_runtime: str | None = None  # "containerd://1.7.2"
    cgroup: str | None = None  # "v1" | "v2": `stat -fc %T /sys/fs/cgroup/`
    reachable: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)  # raw facts for preflight checks
    labels: Mapping[str, str] = field(default_factory=dict)  # the API Node's metadata.labels

    @property
    def is_control_plane(self) -> bool:
        return self.role == ROLE_CONTROL_PLANE


@dataclass(frozen=True)
class ClusterFacts:
    name: str
    version: KubeVersion  # kubeadm-config ClusterConfiguration.kubernetesVersion
    apiserver_version: KubeVersion | None = None  # GET /version
    # kubeadm-config etcd.external.endpoints: () local (stacked) etcd, None not known
    etcd_external: tuple[str, ...] | None = None
    image_repository: str | None = None  # ClusterConfiguration.imageRepository (None: default)


class _Roled(Protocol):
    @property
    def is_control_plane(self) -> bool: ...


N = TypeVar("N", bound=_Roled)
N_co = TypeVar("N_co", bound=_Roled, covariant=True)


class _HasNodes(Protocol[N_co]):
    @property
    def nodes(self) -> Sequence[N_co]: ...


class NodesByRole:
    """``control_planes`` and ``workers``: the nodes of each role, in their order, of
    anything with ``nodes`` (the facts, the inventory)."""

    @property
    def control_planes(self: _HasNodes[N]) -> tuple[N, ...]:
        return tuple(n for n in self.nodes if n.is_control_plane)

    @property
    def workers(self: _HasNodes[N]) -> tuple[N, ...]:
        return tuple(n for n in self.nodes if not n.is_control_plane)


@dataclass(frozen=True)
class Facts(NodesByRole):
    cluster: ClusterFacts
    nodes: tuple[NodeFacts, ...]
    findings: tuple[Finding, ...] = ()  # problems met while gathering (unreachable node, ...)
    gathered_at: str | None = None

    def node(self, name: str) -> NodeFacts:
        return self._by_name[name]  # KeyError(name) for a node not in the facts

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    @cached_property
    def _by_name(self) -> dict[str, NodeFacts]:
        """Name -> node, built once (the first of a repeated name, as a scan would find)."""
        out: dict[str, NodeFacts] = {}
        for n in self.nodes:
            out.setdefault(n.name, n)
        return out

    # ---- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def v(x: KubeVersion | None) -> str | None:
            return str(x) if x is not None else None

        nodes: list[dict[str, Any]] = []
        for n in self.nodes:
            d: dict[str, Any] = {
                "name": n.name,
                "role": n.role,
                "address": n.address,
                "kubelet": v(n.kubelet),
                "kubeadm": v(n.kubeadm),
                "kubectl": v(n.kubectl),
                "ready": n.ready,
                "unschedulable": n.unschedulable,
                "os_family": n.os_family,
                "package_manager": n.package_manager,
                "packages": {
                    k: {"version": p.version, "held": p.held} for k, p in n.packages.items()
                },
                "repo_minor": n.repo_minor,
                "repo_versions": list(n.repo_versions),
                "container_runtime": n.container_runtime,
                "cgroup": n.cgroup,
                "reachable": n.reachable,
                "extra": dict(n.extra),
            }
            if n.labels:
                d["labels"] = dict(n.labels)
            if n.control_plane is not None:
                cp = n.control_plane
                d["control_plane"] = {
                    "apiserver": v(cp.apiserver),
                    "controller_manager": v(cp.controller_manager),
                    "scheduler": v(cp.scheduler),
                    "etcd": cp.etcd,
                }
            nodes.append(d)
        cluster: dict[str, Any] = {
            "name": self.cluster.name,
            "version": str(self.cluster.version),
            "apiserver_version": v(self.cluster.apiserver_version),
        }
        if self.cluster.image_repository is not None:
            cluster["image_repository"] = self.cluster.image_repository
        if self.cluster.etcd_external is not None:
            cluster["etcd_external"] = list(self.cluster.etcd_external)
        return {
            "cluster": cluster,
            "nodes": nodes,
            "findings": [f.to_dict() for f in self.findings],
            "gathered_at": self.gathered_at,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "facts") -> Facts:
        """Build Facts from JSON data (the facts file: :class:`_FactsDoc`). Raises
        ValueError with one line naming the field (``nodes[1].kubelet: invalid version``)."""
        try:
            doc = validate(_FactsDoc, data, source)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        seen: set[str] = set()
        for i, n in enumerate(doc.nodes):
            if n.name in seen:
                raise ValueError(f"{source}: nodes[{i}].name: duplicate node {n.name!r}")
            seen.add(n.name)
        return doc.facts()


# --------------------------------------------------------------------------- the facts file


def _cgroup(value: object) -> object:
    if value is None or value in ("v1", "v2"):
        return value
    raise ValueError(f"{short(value)} is not v1 or v2")


def _labels(value: object) -> object:
    if value is None or (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(x, str) for k, x in value.items())
    ):
        return value
    raise ValueError("must be a mapping of strings")


Text = StrictStr | None


class _PackageDoc(FileModel):
    version: StrictStr
    held: bool = False


class _ControlPlaneDoc(FileModel):
    apiserver: Version | None = None
    controller_manager: Version | None = None
    scheduler: Version | None = None
    etcd: Text = None


class _NodeDoc(FileModel):
    name: Annotated[StrictStr, Field(min_length=1)]
    role: Literal["control-plane", "worker"]
    address: Text = None
    kubelet: Version | None = None
    kubeadm: Version | None = None
    kubectl: Version | None = None
    control_plane: _ControlPlaneDoc | None = None
    ready: bool | None = None
    unschedulable: bool | None = False
    os_family: Text = None
    package_manager: Text = None
    packages: dict[str, _PackageDoc] | None = None
    repo_minor: Text = None
    repo_versions: list[StrictStr] | None = None
    container_runtime: Text = None
    cgroup: Annotated[Text, BeforeValidator(_cgroup)] = None
    reachable: bool | None = True
    extra: dict[str, Any] | None = None
    labels: Annotated[dict[str, str] | None, BeforeValidator(_labels)] = None

    def facts(self) -> NodeFacts:
        cp = self.control_plane
        return built_from(
            NodeFacts,
            self,
            control_plane=None if cp is None else built_from(ControlPlaneVersions, cp),
            unschedulable=bool(self.unschedulable),
            packages={
                k: PackageFact(k, p.version, p.held) for k, p in (self.packages or {}).items()
            },
            repo_versions=tuple(self.repo_versions or ()),
            reachable=bool(self.reachable),
            extra=self.extra or {},
            labels=self.labels or {},
        )


class _ClusterDoc(FileModel):
    name: Text = None
    version: Version
    apiserver_version: Version | None = None
    etcd_external: list[StrictStr] | None = None
    image_repository: Text = None


class _FindingDoc(FileModel):
    code: StrictStr
    severity: Severity = Severity.WARNING
    message: str = ""
    node: Text = None
    fix: Text = None
    override: Text = None


class _FactsDoc(FileModel):
    """The facts file (``upgrader facts``; :meth:`Facts.to_dict` writes it)."""

    cluster: _ClusterDoc
    nodes: Annotated[list[_NodeDoc], Field(min_length=1)]
    findings: list[_FindingDoc] | None = None
    gathered_at: Text = None

    def facts(self) -> Facts:
        c = self.cluster
        etcd = c.etcd_external
        return Facts(
            built_from(
                ClusterFacts,
                c,
                name=c.name or "cluster",
                etcd_external=tuple(etcd) if etcd is not None else None,
                image_repository=c.image_repository or None,
            ),
            tuple(n.facts() for n in self.nodes),
            tuple(built_from(Finding, f) for f in self.findings or ()),
            self.gathered_at,
        )


# --------------------------------------------------------------------------- steps and plans

# Step kinds the executor knows. "shell" runs ``command`` over the node's transport;
# "etcd-snapshot" saves an etcd snapshot on the node and copies it to the operator's machine
# (SFTP, sha256 checked); the others are Kubernetes operations done through the API.
STEP_KINDS = tuple(k.value for k in StepKind)


@dataclass(frozen=True)
class Step:
    """One unit of work, as planned and as executed (the same value).

    ``id`` is unique within a plan and stable across re-plans of the same inputs
    (``<hop>/<node>/<phase>/<name>``, e.g. ``v1.28.4/w-1/worker/kubeadm-upgrade-node``),
    so the state file can key on it. ``command`` and ``check`` are complete, quoted shell
    command lines for ``shell`` steps; ``check`` exits 0 when the step's effect is
    already there ("already done?"). ``retry_safe`` steps may be retried blindly; others
    are re-checked with ``check`` before any second attempt.
    """

    id: str
    kind: str
    node: str
    hop: str
    phase: str
    name: str
    description: str
    command: str | None = None
    check: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    retry_safe: bool = False
    timeout: float = 300.0
    sudo: bool = True

    def to_dict(self) -> dict[str, Any]:
        # spelled out: a plan of thousands of nodes writes it for every step
        return {
            "id": self.id,
            "kind": self.kind,
            "node": self.node,
            "hop": self.hop,
            "phase": self.phase,
            "name": self.name,
            "description": self.description,
            "command": self.command,
            "check": self.check,
            "params": dict(self.params),
            "retry_safe": self.retry_safe,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class PlanEntry:
    """A visit to one node in one phase of one hop: its steps, in order."""

    node: str
    role: str
    phase: str  # "first-control-plane" | "control-plane" | "control-plane-kubelet" | "worker"
    hop: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.node,
            **field_values(self, skip=("node", "steps")),
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Plan:
    current: KubeVersion
    target: KubeVersion
    hops: tuple[KubeVersion, ...]
    entries: tuple[PlanEntry, ...]
    findings: tuple[Finding, ...]
    strategy: str = "per-hop"  # "per-hop" | "drain-once"
    overrides: tuple[str, ...] = ()  # override flags the operator gave
    # the workers chosen, their groups and order (--nodes, --selector, --group-by, ...)
    selection: WorkerSelection | None = None
    node_env: tuple[str, ...] = ()  # names the inventory's node_env exports (never values)
    package_mirror: str | None = None  # the inventory's packages.mirror

    @property
    def steps(self) -> Iterator[Step]:
        for e in self.entries:
            yield from e.steps

    @property
    def blockers(self) -> tuple[Finding, ...]:
        """Blockers not passed by an override the operator gave."""
        return tuple(
            f
            for f in self.findings
            if f.severity == Severity.BLOCKER
            and not (f.override is not None and f.override in self.overrides)
        )

    @property
    def nothing_to_do(self) -> bool:
        return not self.entries and not self.blockers

    def to_dict(self) -> dict[str, Any]:
        out = {
            "current": str(self.current),
            "target": str(self.target),
            "hops": [str(h) for h in self.hops],
            "strategy": self.strategy,
            "nodes": [e.to_dict() for e in self.entries],
            "findings": [f.to_dict() for f in self.findings],
            "blocked": bool(self.blockers),
            **({"node_env": list(self.node_env)} if self.node_env else {}),
            **({"package_mirror": self.package_mirror} if self.package_mirror else {}),
        }
        if self.selection is not None and self.selection.active:
            out["workers"] = self.selection.to_dict()
        return out
