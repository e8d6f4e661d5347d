"""The lab's spec: the YAML a tester writes, validated, and its resolved JSON form.

Owns the pydantic models of a lab spec (nodes with their container runtime, cgroup version
and labels, workloads, delays, faults, missing packages, rbac, ``etcd: local|external``),
their defaults, :func:`load_spec` (YAML file -> :class:`LabSpec`), :func:`from_flags`
(``--control-planes/--workers/--version`` -> :class:`LabSpec`) and :func:`resolve`
(:class:`LabSpec` -> the ``DIR/spec.json`` document of the lab contract, every default
filled and a loopback address assigned to every node, unique per lab directory).

Must not: start processes, write files, or know how the API server or node tools use the
resolved document beyond the shape the contract fixes. Bad input raises
:class:`upgrader.errors.ConfigError` with one line naming the file and the field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from upgrader.core.problems import Loc, render_loc
from upgrader.core.versions import KubeVersion, VersionError
from upgrader.errors import ConfigError
from upgrader_lab.apiserver.spec import read_spec_text

DEFAULT_VERSION = "v1.27.8"
DEFAULT_RUNTIME = "containerd://1.7.2"
PACKAGES = ("kubeadm", "kubelet", "kubectl")
ROLE_CONTROL_PLANE = "control-plane"
ROLE_WORKER = "worker"
MAX_NODES = 2000
# Node flavors and the OS family (package world) each one has.
FLAVORS = ("debian", "rhel", "fedora", "kubespray")
FAMILY_OF_FLAVOR = {"debian": "debian", "rhel": "rhel", "fedora": "rhel", "kubespray": "debian"}
Flavor = Literal["debian", "rhel", "fedora", "kubespray"]

_DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
_PLAIN_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_MINOR_RE = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
DEFAULT_SSH_USER = "upgrader-lab"
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# What a kubelet reports as status.nodeInfo.containerRuntimeVersion: "<name>://<version>".
_RUNTIME_RE = re.compile(
    r"^(containerd|cri-o|docker)://v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$"
)
# Label keys and values as the API server validates them (apimachinery validation).
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


# --------------------------------------------------------------------------- field checks


def _check_version(value: str) -> str:
    try:
        return str(KubeVersion.parse(value))
    except VersionError as exc:
        raise ValueError(str(exc)) from None


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A field check: the value as given when ``pattern`` matches it, else "is not ``what``"."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def _check_loopback(value: str) -> str:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if not addr.is_loopback or str(addr).endswith((".0", ".255")) or str(addr) == "127.0.0.1":
        raise ValueError(
            f"{value!r} is not a usable loopback address (127.0.0.0/8, not 127.0.0.1, "
            "not .0 or .255)"
        )
    return str(addr)


def _check_plain_version(value: str) -> str:
    text = value[1:] if value.startswith("v") else value
    if not _PLAIN_RE.match(text):
        raise ValueError(f"{value!r} is not a version like 1.28.4")
    return text


def _check_minor(value: str) -> str:
    m = _MINOR_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a minor like 1.28")
    return f"{m.group(1)}.{m.group(2)}"


def _check_runtime(value: str) -> str:
    m = _RUNTIME_RE.match(value)
    if not m:
        raise ValueError(
            f"{value!r} is not a container runtime like containerd://1.7.2, "
            "containerd://2.0.0, cri-o://1.30.4 or docker://24.0.7"
        )
    return f"{m.group(1)}://{m.group(2)}.{m.group(3)}.{m.group(4)}"


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not _LABEL_PREFIX_RE.match(prefix)) or not _LABEL_NAME_RE.match(name):
            raise ValueError(f"{key!r} is not a valid label key (a qualified name)")
        if not _LABEL_VALUE_RE.match(val):
            raise ValueError(f"{key}: {val!r} is not a valid label value")
    return value


Version = Annotated[str, AfterValidator(_check_version)]
Runtime = Annotated[str, AfterValidator(_check_runtime)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
NodeName = Annotated[
    str,
    AfterValidator(
        _matching(
            _DNS_LABEL_RE,
            "a valid node name (a DNS-1123 label: lowercase letters, digits and '-', at most "
            "63 characters)",
        )
    ),
]
ObjectName = Annotated[str, AfterValidator(_matching(_NAME_RE, "a valid Kubernetes object name"))]
Loopback = Annotated[str, AfterValidator(_check_loopback)]
PlainVersion = Annotated[str, AfterValidator(_check_plain_version)]
Minor = Annotated[str, AfterValidator(_check_minor)]
Seconds = Annotated[float, Field(ge=0, le=86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _exactly_one(model: BaseModel, first: str, second: str) -> None:
    """Refuse ``model`` unless exactly one of the fields ``first`` and ``second`` is set."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"give exactly one of {first} or {second}")


# --------------------------------------------------------------------------- models


class KubeletConfig(_Strict):
    """What ``/var/lib/kubelet/config.yaml`` on the node says about its security posture."""

    anonymous_auth: bool = False
    authorization_mode: Literal["Webhook", "AlwaysAllow"] = "Webhook"
    read_only_port: Annotated[int, Field(ge=0, le=65535)] = 0


class NodeSpec(_Strict):
    """One node. Versions left out default to the cluster's version.

    ``flavor`` says what kind of node it is: ``debian`` (apt, pkgs.k8s.io debs), ``rhel``
    (Rocky 9: dnf4, the repo's ``exclude=``, ``keepcache=0``), ``fedora`` (Fedora 41:
    dnf5) or ``kubespray`` (Debian userland, kube binaries in ``/usr/local/bin`` and no
    kube packages). ``os_family`` is still accepted for compatibility: ``rhel`` alone means
    flavor ``rhel``; given with a flavor it must be that flavor's family. ``versionlock``
    (rpm flavors): the versionlock plugin is installed (default: when ``held`` names a
    package); ``held`` on an rpm node means versionlocked."""

    name: NodeName
    role: Literal["control-plane", "worker"]
    flavor: Flavor | None = None
    os_family: Literal["debian", "rhel"] | None = None
    versionlock: bool | None = None
    kubelet: Version | None = None
    kubeadm: Version | None = None
    kubectl: Version | None = None
    control_plane: Version | None = None
    cordoned: bool = False
    address: Loopback | None = None
    never_ready: bool = False
    runtime: Runtime = DEFAULT_RUNTIME  # status.nodeInfo.containerRuntimeVersion
    cgroup: Literal["v1", "v2"] = "v2"  # what `stat -fc %T /sys/fs/cgroup/` tells
    labels: Labels = Field(default_factory=dict)  # extra labels of the Node object
    kubelet_config: KubeletConfig = Field(default_factory=KubeletConfig)
    repo_minor: Minor | None = None  # the minor the node's package repository points at
    # None: by OS family (Debian: the three kube packages, as the kubeadm install page does)
    held: list[Literal["kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni"]] | None = (
        None
    )

    @model_validator(mode="after")
    def _worker_has_no_control_plane(self) -> NodeSpec:
        if self.role == ROLE_WORKER and self.control_plane is not None:
            raise ValueError("control_plane: only control-plane nodes run control-plane pods")
        return self

    @model_validator(mode="after")
    def _flavor_fits_family(self) -> NodeSpec:
        if (
            self.flavor is not None
            and self.os_family is not None
            and FAMILY_OF_FLAVOR[self.flavor] != self.os_family
        ):
            raise ValueError(
                f"os_family: {self.os_family!r} does not fit flavor {self.flavor!r} (its "
                f"family is {FAMILY_OF_FLAVOR[self.flavor]!r}); give only the flavor"
            )
        if self.versionlock and self.flavor_or_default in ("debian", "kubespray"):
            raise ValueError("versionlock: only rpm flavors (rhel, fedora) have dnf versionlock")
        return self

    @property
    def flavor_or_default(self) -> str:
        if self.flavor is not None:
            return self.flavor
        return "rhel" if self.os_family == "rhel" else "debian"


class PDBSpec(_Strict):
    name: ObjectName | None = None  # default: the workload's name
    maxUnavailable: int | str | None = None  # the Kubernetes field names
    minAvailable: int | str | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> PDBSpec:
        _exactly_one(self, "maxUnavailable", "minAvailable")
        return self


class WorkloadSpec(BaseModel):
    """A workload the API server seeds. Extra keys pass through to the API server."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["Deployment", "DaemonSet", "Pod"]
    namespace: ObjectName = "default"
    name: ObjectName
    replicas: Annotated[int, Field(ge=0, le=10000)] | None = None
    pdb: PDBSpec | None = None
    empty_dir: bool = False
    grace_period: Annotated[int, Field(ge=0, le=86400)] = 1
    node: NodeName | None = None


class Delays(_Strict):
    kubelet_ready: Seconds = 1.0
    package_install: Seconds = 0.0
    pod_termination: Seconds = 0.2
    download: Seconds = 0.0
    command: Seconds = 0.0


# The phases of `kubeadm upgrade apply` (cmd/kubeadm/app/cmd/upgrade/apply.go, 1.31's
# workflow); `upgrade node` goes through the ones it has (control-plane, kubelet-config,
# addon/*).
KUBEADM_PHASES = (
    "preflight",
    "control-plane",
    "upload-config",
    "kubeconfig",
    "kubelet-config",
    "bootstrap-token",
    "addon/coredns",
    "addon/kube-proxy",
    "post-upgrade",
)


class NodeFault(_Strict):
    """A simulated node tool fails (``exit``), hangs (``hang`` seconds, then runs), or drops
    the SSH session (``drop``) on its first ``times`` invocations matching ``match``. With
    ``after_phase`` (kubeadm upgrade apply/node only) kubeadm runs through that phase and
    then fails, leaving what the earlier phases did in place."""

    node: NodeName
    match: Annotated[str, Field(min_length=1)]
    times: Annotated[int, Field(ge=1)] = 1
    exit: Annotated[int, Field(ge=0, le=255)] | None = None
    stderr: str | None = None
    hang: Seconds | None = None
    drop: bool = False
    # kubeadm upgrade apply/node: run through this phase, then fail (exit, stderr)
    after_phase: Literal[KUBEADM_PHASES] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_effect(self) -> NodeFault:
        if self.drop and (self.exit is not None or self.hang is not None):
            raise ValueError("drop: a dropped session has no exit code and no hang")
        if self.after_phase is not None and (self.drop or self.hang is not None):
            raise ValueError("after_phase: the command fails after the phase (no drop, no hang)")
        if not self.drop and self.hang is None and self.exit is None:
            self.exit = 1
        return self


class ApiFaultBody(BaseModel):
    """An API fault; the API server owns its meaning (extra keys pass through)."""

    model_config = ConfigDict(extra="allow")

    method: str = "*"
    path_prefix: Annotated[str, Field(min_length=1)]
    status: Annotated[int, Field(ge=400, le=599)] | None = None
    timeout: Seconds | None = None
    times: Annotated[int, Field(ge=1)] = 1

    @field_validator("path_prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value

    @model_validator(mode="after")
    def _has_effect(self) -> ApiFaultBody:
        _exactly_one(self, "status", "timeout")
        return self


class ApiFault(_Strict):
    api: ApiFaultBody


class RbacRule(BaseModel):
    model_config = ConfigDict(extra="allow")

    verbs: list[str]
    group: str = ""
    resources: list[str]


class Rbac(BaseModel):
    model_config = ConfigDict(extra="allow")

    allow: list[RbacRule] = Field(default_factory=list)
    # the kube-system/upgrader-lock Lease exists from the start (`upgrader rbac` prints it)
    lease: bool = False


def _fault_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "ApiFault" if "api" in value else "NodeFault"
    return "ApiFault" if isinstance(value, ApiFault) else "NodeFault"


Fault = Annotated[
    Annotated[NodeFault, Tag("NodeFault")] | Annotated[ApiFault, Tag("ApiFault")],
    Discriminator(_fault_tag),
]


def _default_nodes() -> list[NodeSpec]:
    return [
        NodeSpec(name="cp-1", role="control-plane"),
        NodeSpec(name="w-1", role="worker"),
        NodeSpec(name="w-2", role="worker"),
    ]


def _default_workloads() -> list[WorkloadSpec]:
    return [
        WorkloadSpec(kind="Deployment", name="web", replicas=3, pdb=PDBSpec(maxUnavailable=1)),
        WorkloadSpec(kind="Deployment", name="api", replicas=2, pdb=PDBSpec(minAvailable=1)),
        WorkloadSpec(kind="DaemonSet", namespace="kube-system", name="kube-proxy"),
    ]


class LabSpec(BaseModel):
    """The whole spec. Unknown top-level keys are kept (and written to spec.json)."""

    model_config = ConfigDict(extra="allow")

    cluster_name: Annotated[str, Field(pattern=_CLUSTER_RE.pattern)] = "lab"
    version: Version = DEFAULT_VERSION
    nodes: Annotated[list[NodeSpec], Field(min_length=1, max_length=MAX_NODES)] = Field(
        default_factory=_default_nodes
    )
    workloads: list[WorkloadSpec] = Field(default_factory=_default_workloads)
    delays: Delays = Field(default_factory=Delays)
    faults: list[Fault] = Field(default_factory=list)
    missing_packages: list[PlainVersion] = Field(default_factory=list)
    # pre-release versions (v1.29.0-rc.1) the package repository also offers
    prerelease_packages: list[Version] = Field(default_factory=list)
    # the cluster's imageRepository (kubeadm-config, static pod and addon images)
    image_repository: Annotated[
        str, Field(pattern=r"^[a-z0-9]([a-z0-9.\-:]*[a-z0-9])?(/[a-z0-9._\-]+)*$")
    ] = "registry.k8s.io"
    rbac: Rbac | None = None
    # "external": kubeadm-config has etcd.external.endpoints, no etcd static pod anywhere
    etcd: Literal["local", "external"] = "local"
    # The SSH login of every node (a host account the lab creates). Not root by default:
    # commands reach root through the real sudo (upgrader_lab.sudo); "root" logs in as root.
    ssh_user: Annotated[str, Field(pattern=_USER_RE.pattern)] = DEFAULT_SSH_USER
    # The node's sudo asks that user's password (generated, DIR/sudo-password).
    sudo_password: bool = False


# --------------------------------------------------------------------------- errors


def _field_path(loc: Iterable[str | int]) -> Loc:
    """The list indexes and field names of a pydantic ``loc``: the union-member names
    (``NodeFault``) and validator tags pydantic adds are left out."""
    return tuple(
        part
        for part in loc
        if isinstance(part, int) or (_IDENT_RE.match(part) and not part[:1].isupper())
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _validation_error(source: str, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return ConfigError(_one_line(f"{source}: {render_loc(_field_path(err['loc']))}: {msg}"))


def _cross_checks(spec: LabSpec, source: str) -> None:
    def fail(loc: str, msg: str) -> None:
        raise ConfigError(_one_line(f"{source}: {loc}: {msg}"))

    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.name in names:
            fail(
                f"nodes[{i}].name",
                f"duplicate node name {node.name!r} (also nodes[{names[node.name]}])",
            )
        names[node.name] = i
        if node.address is not None:
            if node.address in addresses:
                fail(
                    f"nodes[{i}].address",
                    f"duplicate address {node.address} (also nodes[{addresses[node.address]}])",
                )
            addresses[node.address] = i
    if not any(n.role == ROLE_CONTROL_PLANE for n in spec.nodes):
        fail("nodes", "a lab needs at least one control-plane node")
    for i, fault in enumerate(spec.faults):
        if isinstance(fault, NodeFault) and fault.node not in names:
            fail(f"faults[{i}].node", f"no node named {fault.node!r}")
    seen: set[tuple[str, str, str]] = set()
    for i, wl in enumerate(spec.workloads):
        key = (wl.kind, wl.namespace, wl.name)
        if key in seen:
            fail(f"workloads[{i}].name", f"duplicate {wl.kind} {wl.namespace}/{wl.name}")
        seen.add(key)
        if wl.node is not None and wl.node not in names:
            fail(f"workloads[{i}].node", f"no node named {wl.node!r}")
        if wl.kind == "Pod" and wl.node is None:
            fail(f"workloads[{i}].node", "a bare Pod needs the node it runs on")


# --------------------------------------------------------------------------- constructors


def parse_spec(data: Any, source: str = "spec") -> LabSpec:
    """A mapping (from YAML/JSON) -> a validated :class:`LabSpec`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    try:
        spec = LabSpec.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(source, exc) from None
    _cross_checks(spec, source)
    return spec


def load_spec(path: Path) -> LabSpec:
    """Read and validate a YAML spec file."""
    text = read_spec_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_spec(data, str(path))


def from_flags(
    control_planes: int = 1, workers: int = 2, version: str | None = None, flavor: str | None = None
) -> LabSpec:
    """A lab of ``cp-1..cp-N`` and ``w-1..w-M`` at ``version`` with the default workloads,
    every node of ``flavor`` (default debian)."""
    if not 1 <= control_planes <= 50:
        raise ConfigError(f"--control-planes: {control_planes} is not a number from 1 to 50")
    if not 0 <= workers <= MAX_NODES - control_planes:
        raise ConfigError(f"--workers: {workers} is not a number from 0 to {MAX_NODES - 1}")
    nodes: list[dict[str, Any]] = [
        {"name": f"cp-{i}", "role": ROLE_CONTROL_PLANE} for i in range(1, control_planes + 1)
    ]
    nodes += [{"name": f"w-{i}", "role": ROLE_WORKER} for i in range(1, workers + 1)]
    if flavor is not None:
        if flavor not in FLAVORS:
            raise ConfigError(f"--flavor: {flavor!r} is not one of {', '.join(FLAVORS)}")
        for n in nodes:
            n["flavor"] = flavor
    data: dict[str, Any] = {"nodes": nodes}
    if version is not None:
        try:
            data["version"] = _check_version(version)
        except ValueError as exc:
            raise ConfigError(f"--version: {exc}") from None
    return parse_spec(data, "flags")


def with_flavor(spec: LabSpec, flavor: str) -> LabSpec:
    """``spec`` with ``flavor`` for every node that names neither a flavor nor an OS family
    (``upgrader lab up --flavor``)."""
    if flavor not in FLAVORS:
        raise ConfigError(f"--flavor: {flavor!r} is not one of {', '.join(FLAVORS)}")
    nodes = [
        n.model_copy(update={"flavor": flavor}) if n.flavor is None and n.os_family is None else n
        for n in spec.nodes
    ]
    return spec.model_copy(update={"nodes": nodes})


# --------------------------------------------------------------------------- resolve

ListenCheck = Callable[[str], bool]


def listening_sockets() -> list[tuple[str, int]]:
    """(IPv4 address, port) of every listening TCP socket, read from ``/proc/net/tcp``."""
    out: list[tuple[str, int]] = []
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":  # 0A = LISTEN
            continue
        try:
            hexaddr, hexport = parts[1].split(":")
            addr = ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(hexaddr))))
            out.append((str(addr), int(hexport, 16)))
        except ValueError:
            continue
    return out


def listening_addresses() -> set[str]:
    """IPv4 addresses with a listening TCP socket, read from ``/proc/net/tcp``."""
    return {addr for addr, _ in listening_sockets()}


_BLOCK_SIZE = 253  # .2 .. .254 of one 127.a.b.0/24


def _block_addresses(index: int) -> list[str]:
    a = 1 + (index // 256) % 254
    b = index % 256
    return [f"127.{a}.{b}.{c}" for c in range(2, 2 + _BLOCK_SIZE)]


def assign_addresses(
    count: int, seed: str, taken: set[str], in_use: ListenCheck | None = None
) -> list[str]:
    """``count`` loopback addresses in consecutive /24 blocks chosen from a hash of ``seed``
    so that two labs (two seeds) land apart; a block where anything listens (``in_use``)
    or that holds an address in ``taken`` is skipped."""
    listening = listening_addresses() if in_use is None else None

    def busy(addr: str) -> bool:
        if addr in taken:
            return True
        return in_use(addr) if in_use is not None else addr in (listening or set())

    blocks = max(1, -(-count // _BLOCK_SIZE))
    start = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % (254 * 256)
    for attempt in range(254 * 256):
        first = (start + attempt * blocks) % (254 * 256)
        candidate: list[str] = []
        for k in range(blocks):
            candidate.extend(_block_addresses((first + k) % (254 * 256)))
        block_prefixes = {a.rsplit(".", 1)[0] for a in candidate}
        if any(busy(a) for a in candidate) or any(
            t.rsplit(".", 1)[0] in block_prefixes for t in taken
        ):
            continue
        return candidate[:count]
    raise ConfigError("no free 127.x.y.0/24 block for the lab's node addresses")


def default_repo_minor(kubeadm: str) -> str:
    return KubeVersion.parse(kubeadm).minor_str


def resolve(
    spec: LabSpec, lab_dir: Path | None = None, in_use: ListenCheck | None = None
) -> dict[str, Any]:
    """The ``DIR/spec.json`` document: every default filled, addresses assigned.

    Addresses come from a hash of ``lab_dir`` (two labs in two directories get different
    blocks); a block where something listens is skipped."""
    version = spec.version
    seed = str(lab_dir.resolve()) if lab_dir is not None else "upgrader-lab"
    taken = {n.address for n in spec.nodes if n.address is not None}
    free = iter(assign_addresses(len(spec.nodes), seed, taken, in_use))
    nodes: list[dict[str, Any]] = []
    for n in spec.nodes:
        is_cp = n.role == ROLE_CONTROL_PLANE
        kubeadm = n.kubeadm or version
        flavor = n.flavor_or_default
        family = FAMILY_OF_FLAVOR[flavor]
        held = n.held if n.held is not None else (list(PACKAGES) if flavor == "debian" else [])
        if flavor == "kubespray":
            held = []  # no kube packages to hold
        versionlock = bool(held) if n.versionlock is None else n.versionlock
        nodes.append(
            {
                "name": n.name,
                "role": n.role,
                "flavor": flavor,
                "os_family": family,
                "versionlock": versionlock if family == "rhel" else False,
                "kubelet": n.kubelet or version,
                "kubeadm": kubeadm,
                "kubectl": n.kubectl or version,
                "control_plane": (n.control_plane or version) if is_cp else None,
                "cordoned": n.cordoned,
                "address": n.address or next(free),
                "never_ready": n.never_ready,
                "runtime": n.runtime,
                "cgroup": n.cgroup,
                "labels": dict(sorted(n.labels.items())),
                "kubelet_config": n.kubelet_config.model_dump(),
                "repo_minor": n.repo_minor or default_repo_minor(kubeadm),
                "held": sorted(set(held)),
            }
        )
    workloads = []
    for w in spec.workloads:
        d = w.model_dump(exclude_none=True)
        if w.kind == "Deployment" and w.replicas is None:
            d["replicas"] = 1
        workloads.append(d)
    faults: list[dict[str, Any]] = []
    for f in spec.faults:
        if isinstance(f, NodeFault):
            dumped = f.model_dump()
            if dumped.get("after_phase") is None:
                dumped.pop("after_phase", None)
            faults.append(dumped)
        else:
            faults.append({"api": f.api.model_dump(exclude_none=True)})
    known = set(LabSpec.model_fields)
    extra = {k: v for k, v in spec.model_dump().items() if k not in known}
    return {
        "cluster_name": spec.cluster_name,
        "version": version,
        "nodes": nodes,
        "workloads": workloads,
        "delays": spec.delays.model_dump(),
        "faults": faults,
        "missing_packages": sorted(set(spec.missing_packages), key=_plain_key),
        "prerelease_packages": sorted(set(spec.prerelease_packages)),
        "image_repository": spec.image_repository,
        "rbac": spec.rbac.model_dump() if spec.rbac is not None else None,
        "etcd": spec.etcd,
        "ssh_user": spec.ssh_user,
        "sudo_password": spec.sudo_password,
        **extra,
    }


def _plain_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))
