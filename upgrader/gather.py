"""Gather the facts of a cluster: one SSH round trip per node plus a few API reads.

Owns :func:`gather_facts` (Inventory -> :class:`~upgrader.core.model.Facts`): the fact
script (:func:`upgrader.core.parsers.fact_script`) runs on every node concurrently on a
bounded thread pool over the shared :class:`~upgrader.transport.ssh.SSHPool`, while
:func:`upgrader.kube.readers.read_cluster` reads the API; the two are merged per node (the
API's kubelet version, readiness and runtime win over the node's own answers; the role
and address come from the inventory). Problems met on the way are findings naming the
node, never exceptions, except bad input (:class:`~upgrader.errors.ConfigError`: an
unusable kubeconfig, a missing sudo password variable) and a cluster whose version cannot
be learnt at all (:class:`~upgrader.errors.KubernetesError`).

Finding codes: ``NODE_UNREACHABLE``, ``HOST_KEY_REJECTED``, ``FACTS_FAILED`` (the fact
script gave no usable output, or more than :func:`fact_output_cap`), ``FACT_TOO_LARGE`` (one
probe printed more than :data:`~upgrader.core.parsers.FACT_SECTION_CAP`), ``TOOL_MISSING``,
``FACT_UNPARSABLE``, ``OS_UNSUPPORTED``, ``PACKAGE_MANAGER_MISMATCH``, ``REPO_UNKNOWN``,
``REPO_LEGACY``, ``API_UNREACHABLE``, ``API_PROBLEM``, ``NODE_NOT_IN_CLUSTER``,
``NODE_NOT_IN_INVENTORY``, ``ROLE_MISMATCH``, ``MIRROR_PODS_MISSING``,
``CLUSTER_VERSION_ESTIMATED``.

Must not: print, change anything on a node or in the cluster, or judge versions (policy
does that with the facts).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubernetes.client import ApiClient

from upgrader.core import parsers
from upgrader.core.model import (
    ROLE_CONTROL_PLANE,
    ClusterFacts,
    Facts,
    Finding,
    NodeFacts,
    PackageFact,
    Severity,
)
from upgrader.core.parsers import ParseError, Section
from upgrader.core.settings import SettingHints
from upgrader.core.versions import KubeVersion
from upgrader.errors import HostKeyError, KubernetesError, TransportError
from upgrader.kube.client import make_api_client
from upgrader.kube.readers import ClusterRead, read_cluster
from upgrader.kube.retry import DEFAULT_POLICY, RetryPolicy
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHPool

log = logging.getLogger("upgrader.gather")

FACT_TIMEOUT = 120.0  # seconds for the whole fact script on one node
_T = TypeVar("_T")


class InventoryNode(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def role(self) -> str: ...


class GatherInventory(Protocol):
    """What the gatherer uses of :class:`upgrader.inventory.Inventory`."""

    @property
    def cluster_name(self) -> str: ...
    @property
    def nodes(self) -> Sequence[InventoryNode]: ...
    @property
    def kubeconfig_context(self) -> str | None: ...
    def ssh_target(self, node: Any) -> SSHTarget: ...
    def package_manager_for(self, node: Any) -> str: ...
    def kubeconfig_path(self) -> Path | None: ...


# --------------------------------------------------------------------------- node side (pure)


@dataclass(frozen=True)
class NodeProbe:
    """What one node said about itself through the fact script."""

    reachable: bool = True
    kubeadm: KubeVersion | None = None
    kubelet: KubeVersion | None = None
    kubectl: KubeVersion | None = None
    os_family: str | None = None
    packages: Mapping[str, PackageFact] = field(default_factory=dict)
    repo_minor: str | None = None
    repo_versions: tuple[str, ...] = ()
    container_runtime: str | None = None
    cgroup: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


# Tools whose absence blocks an upgrade of the node; others only warn.
_REQUIRED_TOOLS = {"kubeadm", "kubelet", "packages", "repo_versions"}
_TOOL_OF_SECTION: dict[str, Callable[[str], str]] = {
    "kubeadm": lambda pm: "kubeadm",
    "kubelet": lambda pm: "kubelet",
    "kubectl": lambda pm: "kubectl",
    "packages": lambda pm: "dpkg-query" if pm == "apt" else "rpm",
    "holds": lambda pm: "apt-mark" if pm == "apt" else f"{pm} versionlock",
    "repo_versions": lambda pm: "apt-cache" if pm == "apt" else pm,
}
_NATIVE_HINTS = SettingHints()
_FAMILY_OF_MANAGER = {"apt": "debian", "dnf": "rhel", "yum": "rhel", "dnf5": "rhel"}


def interpret_sections(
    node: str,
    package_manager: str,
    sections: Mapping[str, Section],
    settings: SettingHints = _NATIVE_HINTS,
) -> NodeProbe:
    """The fact script's sections -> a :class:`NodeProbe` with findings for whatever is
    missing or unreadable; ``settings`` names inventory settings in fix hints. Pure."""
    findings: list[Finding] = []
    extra: dict[str, Any] = {}

    def finding(code: str, severity: Severity, message: str, fix: str | None = None) -> None:
        findings.append(Finding(code, severity, f"node {node}: {message}", node=node, fix=fix))

    capped = sorted(name for name, sec in sections.items() if sec.capped)
    for name in capped:
        finding(
            "FACT_TOO_LARGE",
            Severity.BLOCKER,
            f"fact probe {name!r} printed more than {parsers.FACT_SECTION_CAP} bytes (the "
            "cap): its output was cut off and is not used",
            fix="find out why the node prints so much for this probe",
        )
    sections = {name: sec for name, sec in sections.items() if not sec.capped}

    def usable(name: str) -> Section | None:
        """The section if its tool ran; a finding (and None) if it is missing."""
        sec = sections.get(name)
        if sec is None and name in capped:
            return None
        if sec is None:
            finding("FACTS_FAILED", Severity.WARNING, f"fact probe {name!r} produced no output")
            return None
        if sec.missing_tool and name in _TOOL_OF_SECTION:
            tool = _TOOL_OF_SECTION[name](package_manager)
            required = name in _REQUIRED_TOOLS
            finding(
                "TOOL_MISSING",
                Severity.BLOCKER if required else Severity.WARNING,
                f"{tool} is not installed (or not on PATH)",
                fix=f"install {tool} on the node" if required else None,
            )
            return None
        return sec

    def parse(name: str, fn: Callable[[str], _T], sec: Section) -> _T | None:
        try:
            return fn(sec.output)
        except ParseError as e:
            finding("FACT_UNPARSABLE", Severity.WARNING, f"{name}: {e}")
            return None

    # OS
    os_family = None
    sec = usable("os_release")
    if sec is not None:
        osr = parse("os-release", parsers.parse_os_release, sec)
        if osr is not None:
            os_family = osr.family
            extra.update(os_id=osr.id, os_version=osr.version_id, os_name=osr.pretty_name)
            if osr.family is None:
                finding("OS_UNSUPPORTED", Severity.WARNING, f"unsupported OS {osr.id!r}")
            elif _FAMILY_OF_MANAGER.get(package_manager) not in (None, osr.family):
                finding(
                    "PACKAGE_MANAGER_MISMATCH",
                    Severity.BLOCKER,
                    f"the inventory says package manager {package_manager!r} but the node "
                    f"runs {osr.id} ({osr.family} family)",
                    fix=f"set {settings.where('nodes[].package_manager')}",
                )

    # binaries
    versions: dict[str, KubeVersion | None] = {}
    version_parsers: tuple[tuple[str, Callable[[str], KubeVersion]], ...] = (
        ("kubeadm", parsers.parse_kubeadm_version),
        ("kubelet", parsers.parse_kubelet_version),
        ("kubectl", parsers.parse_kubectl_version),
    )
    for name, version_fn in version_parsers:
        sec = usable(name)
        versions[name] = parse(name, version_fn, sec) if sec is not None else None

    # packages and holds
    packages: dict[str, PackageFact] = {}
    sec = usable("packages")
    if sec is not None:
        if package_manager == "apt":
            packages = parse("dpkg-query", parsers.parse_dpkg_query, sec) or {}
        else:
            packages = parse("rpm -q", parsers.parse_rpm_query, sec) or {}
    held: frozenset[str] = frozenset()
    sec = holds_sec = usable("holds")
    if sec is not None and (sec.ok or package_manager == "apt"):
        if package_manager == "apt":
            held = parse("apt-mark showhold", parsers.parse_apt_mark_showhold, sec) or held
        else:
            held = parsers.parse_versionlock_list(sec.output)

    # repository
    repo_minor: str | None = None
    excludes: tuple[str, ...] = ()
    sec = sections.get("repo")
    repo_file = (
        "/etc/apt/sources.list.d/kubernetes.list"
        if package_manager == "apt"
        else "/etc/yum.repos.d/kubernetes.repo"
    )
    if sec is None or not sec.ok:
        finding(
            "REPO_UNKNOWN",
            Severity.WARNING,
            f"cannot read {repo_file} ({parsers.section_summary(sec) if sec else 'no output'})",
        )
    else:
        repo_fn = parsers.parse_apt_source if package_manager == "apt" else parsers.parse_yum_repo
        try:
            repo = repo_fn(sec.output)
        except ParseError as e:
            finding("REPO_UNKNOWN", Severity.WARNING, f"{repo_file}: {e}")
        else:
            repo_minor, excludes = repo.minor, repo.excludes
            extra.update(repo_url=repo.url, repo_flavour=repo.flavour)
            if repo.excludes:
                extra["repo_excludes"] = list(repo.excludes)
            if repo.flavour == "legacy":
                finding(
                    "REPO_LEGACY",
                    Severity.WARNING,
                    f"{repo_file} points at the frozen legacy repository {repo.url}",
                    fix="switch to pkgs.k8s.io (one repository per minor)",
                )
    if package_manager != "apt":
        if holds_sec is not None and holds_sec.ok:
            # versionlock entries, apart from the repo's exclude= (the plan releases and
            # restores exactly these around each dnf install)
            extra["versionlocked"] = sorted(held & set(parsers.KUBE_PACKAGES))
        sec = sections.get("dnf_version")
        if sec is not None and sec.ok:
            extra["dnf_major"] = parsers.parse_dnf_version(sec.output)
        held = held | {p for p in packages if parsers.excluded(p, excludes)}
    packages = {
        name: PackageFact(p.name, p.version, p.held or name in held) for name, p in packages.items()
    }

    repo_versions: tuple[str, ...] = ()
    sec = usable("repo_versions")
    if sec is not None:
        if package_manager == "apt":
            repo_versions = parse("apt-cache madison", parsers.parse_apt_cache_madison, sec) or ()
        else:
            repo_versions = parsers.parse_dnf_list(sec.output)

    # kubelet config, runtime
    sec = sections.get("kubelet_config")
    extra["kubelet_config"] = sec.output if sec is not None and sec.ok else None
    runtime = None
    sec = sections.get("runtime")
    if sec is not None and sec.ok:
        runtime = parse("container runtime", parsers.parse_container_runtime, sec)
    cgroup = None
    sec = sections.get("cgroup")
    if sec is not None and sec.ok:
        cgroup = parse("cgroup", parsers.parse_cgroup_fs, sec)

    # raw text for the preflight checks (upgrader.core.checks judges it)
    for section, key in (
        ("kubelet_flags", "kubelet_flags"),
        ("docker_daemon", "docker_daemon_json"),
        ("certs", "certs"),
    ):
        sec = sections.get(section)
        extra[key] = sec.output if sec is not None and sec.ok else None
    sec = sections.get("dockerd")
    extra["dockerd_cmdlines"] = (
        [line for line in sec.output.splitlines() if line.strip()]
        if sec is not None and sec.ok
        else []
    )
    # which files the kube binaries are and whether a package owns them (binary installs)
    sec = sections.get("kube_binaries")
    if sec is not None and sec.ok:
        extra["kube_binaries"] = {
            b.name: {"path": b.path, "owner": b.owner}
            for b in parsers.parse_kube_binaries(sec.output).values()
        }
    sec = sections.get("kubelet_unit")
    if sec is not None and sec.ok:
        extra["kubelet_exec"] = parsers.parse_unit_execstart(sec.output)
    # flock(1) and a root-only /run/upgrader, for the node lock every step command runs under
    sec = sections.get("node_lock")
    extra["node_lock"] = None if sec is None or sec.rc is None else sec.ok
    # crictl (cri-tools), through which the etcd snapshot and health check reach etcd
    sec = sections.get("crictl")
    if sec is not None and sec.rc is not None:
        extra["crictl"] = sec.ok
    kubelet = versions["kubelet"]
    if kubelet is not None:
        extra["kubelet_version_node"] = str(kubelet)

    return NodeProbe(
        reachable=True,
        kubeadm=versions["kubeadm"],
        kubelet=kubelet,
        kubectl=versions["kubectl"],
        os_family=os_family,
        packages=packages,
        repo_minor=repo_minor,
        repo_versions=repo_versions,
        container_runtime=runtime,
        cgroup=cgroup,
        extra=extra,
        findings=tuple(findings),
    )


# --------------------------------------------------------------------------- node side (I/O)


def fact_output_cap(package_manager: str) -> int:
    """The most stdout the fact script may send: every probe at its cap, plus framing."""
    probes = len(parsers.fact_probes(package_manager))
    return probes * (parsers.FACT_SECTION_CAP + 256) + 64 * 1024


def _probe_node(
    inventory: GatherInventory, node: InventoryNode, pool: SSHPool, timeout: float
) -> NodeProbe:
    name = node.name
    manager = inventory.package_manager_for(node)
    target = inventory.ssh_target(node)

    def failed(code: str, message: str, fix: str | None = None) -> NodeProbe:
        return NodeProbe(
            reachable=False,
            findings=(Finding(code, Severity.BLOCKER, message, node=name, fix=fix),),
        )

    # Every probe reads what any user may read, so no sudo: exactly one round trip.
    command = "sh -c " + shlex.quote(parsers.fact_script(manager))
    cap = fact_output_cap(manager)
    try:
        result = pool.get(target).run(command, timeout=timeout, sudo=False, max_output=cap)
    except HostKeyError as e:
        return failed(
            "HOST_KEY_REJECTED",
            str(e),
            fix="verify the node's host key and add it to the known_hosts file",
        )
    except TransportError as e:
        return failed("NODE_UNREACHABLE", str(e), fix="check the address, port, user and key")
    if result.timed_out:
        return NodeProbe(
            reachable=True,
            findings=(
                Finding(
                    "FACTS_FAILED",
                    Severity.BLOCKER,
                    f"node {name}: the fact script timed out after {timeout:.0f}s",
                    node=name,
                ),
            ),
        )
    if result.stdout_dropped:
        # the node ignored the per-probe cap (head -c): not the script we sent, or not
        # the tools it should have; the middle of its output is gone, so none is used
        return NodeProbe(
            reachable=True,
            findings=(
                Finding(
                    "FACTS_FAILED",
                    Severity.BLOCKER,
                    f"node {name}: the fact script printed more than {cap} bytes (the cap); "
                    f"{result.stdout_dropped} bytes dropped, its facts are not used",
                    node=name,
                    fix="check the node's sh and head: each probe's output is cut on the node",
                ),
            ),
        )
    sections = parsers.split_sections(result.stdout)
    if not sections:
        detail = " ".join((result.stderr or result.stdout).split())[:300] or "no output"
        return NodeProbe(
            reachable=True,
            findings=(
                Finding(
                    "FACTS_FAILED",
                    Severity.BLOCKER,
                    f"node {name}: the fact script failed (exit {result.exit_code}): {detail}",
                    node=name,
                    fix="check that the SSH user can log in and run sh",
                ),
            ),
        )
    settings = getattr(inventory, "setting_hints", None) or _NATIVE_HINTS
    return interpret_sections(name, manager, sections, settings)


# --------------------------------------------------------------------------- merge (pure)


def merge_facts(
    cluster_name: str,
    nodes: Sequence[InventoryNode],
    package_managers: Mapping[str, str],
    probes: Mapping[str, NodeProbe],
    cluster: ClusterRead | None,
    api_error: str | None = None,
    gathered_at: str | None = None,
) -> Facts:
    """Node probes + the API read -> Facts. Pure. Raises :class:`KubernetesError` only when
    no cluster version can be found anywhere."""
    findings: list[Finding] = []
    for n in nodes:
        findings.extend(probes[n.name].findings)
    if api_error is not None:
        findings.append(
            Finding(
                "API_UNREACHABLE",
                Severity.BLOCKER,
                f"Kubernetes API: {api_error}",
                fix="check the kubeconfig, its context and that the API server is up",
            )
        )
    api_nodes = cluster.nodes if cluster is not None else {}
    control_planes = cluster.control_planes if cluster is not None else {}
    if cluster is not None:
        for problem in cluster.problems:
            findings.append(Finding("API_PROBLEM", Severity.WARNING, problem))
        known = {n.name for n in nodes}
        for extra_node in sorted(set(api_nodes) - known):
            findings.append(
                Finding(
                    "NODE_NOT_IN_INVENTORY",
                    Severity.WARNING,
                    f"node {extra_node} is in the cluster but not in the inventory: its "
                    "kubelet counts for version skew, but it will not be upgraded",
                    node=extra_node,
                )
            )

    out: list[NodeFacts] = []
    for n in nodes:
        probe = probes[n.name]
        api = api_nodes.get(n.name)
        cp = control_planes.get(n.name)
        if cluster is not None and api is None:
            findings.append(
                Finding(
                    "NODE_NOT_IN_CLUSTER",
                    Severity.WARNING,
                    f"node {n.name}: no Node object of that name in the cluster",
                    node=n.name,
                    fix="inventory node names must match the Kubernetes node names",
                )
            )
        if api is not None and api.control_plane_label != (n.role == ROLE_CONTROL_PLANE):
            label = "has" if api.control_plane_label else "lacks"
            findings.append(
                Finding(
                    "ROLE_MISMATCH",
                    Severity.WARNING,
                    f"node {n.name}: the inventory says {n.role} but the node {label} the "
                    "node-role.kubernetes.io/control-plane label",
                    node=n.name,
                )
            )
        if cluster is not None and api is not None and n.role == ROLE_CONTROL_PLANE and not cp:
            findings.append(
                Finding(
                    "MIRROR_PODS_MISSING",
                    Severity.WARNING,
                    f"node {n.name}: no control-plane mirror pods in kube-system",
                    node=n.name,
                )
            )
        extra = dict(probe.extra)
        if api is not None and api.kubelet_version is None and api.kubelet_version_raw:
            extra["kubelet_version_api"] = api.kubelet_version_raw
        out.append(
            NodeFacts(
                name=n.name,
                role=n.role,
                address=n.address,
                kubelet=(api.kubelet_version if api is not None else None) or probe.kubelet,
                kubeadm=probe.kubeadm,
                kubectl=probe.kubectl,
                control_plane=cp,
                ready=api.ready if api is not None else None,
                unschedulable=api.unschedulable if api is not None else False,
                os_family=probe.os_family,
                package_manager=_effective_manager(package_managers.get(n.name), extra),
                packages=dict(probe.packages),
                repo_minor=probe.repo_minor,
                repo_versions=probe.repo_versions,
                container_runtime=(api.container_runtime if api is not None else None)
                or probe.container_runtime,
                cgroup=probe.cgroup,
                reachable=probe.reachable,
                extra=extra,
                labels=dict(api.labels) if api is not None else {},
            )
        )

    version, apiserver = _cluster_version(cluster, out, findings, api_error)
    return Facts(
        cluster=ClusterFacts(
            name=cluster_name,
            version=version,
            apiserver_version=apiserver,
            etcd_external=cluster.etcd_external if cluster is not None else None,
            image_repository=cluster.image_repository if cluster is not None else None,
        ),
        nodes=tuple(out),
        findings=tuple(findings),
        gathered_at=gathered_at,
    )


def _effective_manager(manager: str | None, extra: Mapping[str, Any]) -> str | None:
    """The inventory's manager, corrected by what ``dnf --version`` said: dnf5 (Fedora 41+,
    also behind the ``dnf``/``yum`` names) takes other flags than dnf4, so it is its own
    package manager ``dnf5`` for the planner; a ``dnf5`` inventory entry on a dnf4 node is
    ``dnf``."""
    major = extra.get("dnf_major")
    if manager in ("dnf", "yum") and major == 5:
        return "dnf5"
    if manager == "dnf5" and major == 4:
        return "dnf"
    return manager


def _cluster_version(
    cluster: ClusterRead | None,
    nodes: Sequence[NodeFacts],
    findings: list[Finding],
    api_error: str | None,
) -> tuple[KubeVersion, KubeVersion | None]:
    apiserver = cluster.apiserver_version if cluster is not None else None
    if cluster is not None and cluster.kubeadm_version is not None:
        return cluster.kubeadm_version, apiserver
    if apiserver is not None:
        findings.append(
            Finding(
                "CLUSTER_VERSION_ESTIMATED",
                Severity.WARNING,
                f"cluster version taken from the API server's /version ({apiserver}): "
                "kubeadm-config has none",
            )
        )
        return apiserver, apiserver
    cps = [n for n in nodes if n.is_control_plane]
    for what, candidates in (
        ("control-plane kubelet", [n.kubelet for n in cps]),
        ("control-plane kubeadm", [n.kubeadm for n in cps]),
    ):
        known = [v for v in candidates if v is not None]
        if known:
            estimate = min(known)
            findings.append(
                Finding(
                    "CLUSTER_VERSION_ESTIMATED",
                    Severity.WARNING,
                    f"cluster version estimated from the oldest {what} ({estimate}): "
                    "the API gave none",
                )
            )
            return estimate, None
    raise KubernetesError(
        "cannot determine the cluster version: "
        + (api_error or "kubeadm-config and /version gave none")
        + ", and no control-plane node reported kubelet or kubeadm"
    )


# --------------------------------------------------------------------------- entry point


def _read_api(api: ApiClient, policy: RetryPolicy) -> tuple[ClusterRead | None, str | None]:
    try:
        return read_cluster(api, policy=policy), None
    except KubernetesError as e:
        return None, str(e)


def gather_facts(
    inventory: GatherInventory,
    *,
    api_client: ApiClient | None = None,
    max_workers: int = 32,
    pool: SSHPool | None = None,
    fact_timeout: float = FACT_TIMEOUT,
    api_policy: RetryPolicy = DEFAULT_POLICY,
) -> Facts:
    """Facts for every inventory node and the cluster. ``pool`` (kept open) lets the caller
    reuse the connections afterwards; without one a private pool is opened and closed.
    Without ``api_client`` one is built from the inventory's kubeconfig (a bad kubeconfig
    is a ConfigError before any node is contacted)."""
    started = time.monotonic()
    nodes = list(inventory.nodes)
    own_api = api_client is None
    api = api_client
    if api is None:
        api = make_api_client(
            inventory.kubeconfig_path(),
            inventory.kubeconfig_context,
            missing_hint=getattr(inventory, "kubeconfig_hint", None),
        )
    managers = {n.name: inventory.package_manager_for(n) for n in nodes}
    own_pool = pool is None
    ssh = pool if pool is not None else SSHPool()
    try:
        workers = max(1, min(max_workers, len(nodes))) + 1  # + the API reader
        ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gather")
        try:
            api_future = ex.submit(_read_api, api, api_policy)
            futures = {
                n.name: ex.submit(_probe_node, inventory, n, ssh, fact_timeout) for n in nodes
            }
            probes = {name: f.result() for name, f in futures.items()}
            cluster, api_error = api_future.result()
        except BaseException:
            # Ctrl-C / SIGTERM: do not wait for probes hung in a connect or an SSH banner
            # (read-only; the process exit ends them), and start no queued one
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
    finally:
        if own_pool:
            ssh.close()
        if own_api:
            api.close()  # type: ignore[no-untyped-call]
    facts = merge_facts(
        inventory.cluster_name,
        nodes,
        managers,
        probes,
        cluster,
        api_error,
        gathered_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    log.info(
        "gathered facts of %d node(s) in %.1fs: %d finding(s)",
        len(nodes),
        time.monotonic() - started,
        len(facts.findings),
    )
    return facts
