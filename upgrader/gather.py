"""Gather the facts of a cluster: one SSH round trip per node plus a few API reads.

Owns :func:`gather_facts` (Inventory -> :class:`~upgrader.core.model.Facts`): the fact
script (:func:`upgrader.core.probes.fact_script`) runs on every node concurrently on a
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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

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
from upgrader.core.probes import PROBE, fact_probes, fact_script
from upgrader.core.settings import SettingHints
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import PackageManager
from upgrader.errors import HostKeyError, KubernetesError, TransportError
from upgrader.kube.client import make_api_client
from upgrader.kube.readers import ClusterRead, read_cluster
from upgrader.kube.retry import DEFAULT_POLICY, RetryPolicy
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHPool

log = logging.getLogger("upgrader.gather")

FACT_TIMEOUT = 120.0  # seconds for the whole fact script on one node


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


_NATIVE_HINTS = SettingHints()


class _Sections:
    """One node's fact-script sections, read through the probe table
    (:data:`upgrader.core.probes.PROBES`); what is missing or unreadable becomes a finding."""

    def __init__(self, node: str, package_manager: str, sections: Mapping[str, Section]) -> None:
        self.node, self.pm = node, package_manager
        self.findings: list[Finding] = []
        self.capped = sorted(name for name, sec in sections.items() if sec.capped)
        for name in self.capped:
            self.finding(
                "FACT_TOO_LARGE",
                Severity.BLOCKER,
                f"fact probe {name!r} printed more than {parsers.FACT_SECTION_CAP} bytes (the "
                "cap): its output was cut off and is not used",
                fix="find out why the node prints so much for this probe",
            )
        self.sections = {name: sec for name, sec in sections.items() if not sec.capped}

    def finding(self, code: str, severity: Severity, message: str, fix: str | None = None) -> None:
        node = self.node
        self.findings.append(Finding(code, severity, f"node {node}: {message}", node=node, fix=fix))

    def ok(self, name: str) -> Section | None:
        """The section if its probe exited 0."""
        sec = self.sections.get(name)
        return sec if sec is not None and sec.ok else None

    def usable(self, name: str) -> Section | None:
        """The section if its tool ran; a finding (and None) if it is missing."""
        sec = self.sections.get(name)
        if sec is None and name in self.capped:
            return None
        if sec is None:
            self.finding(
                "FACTS_FAILED", Severity.WARNING, f"fact probe {name!r} produced no output"
            )
            return None
        probe = PROBE[name]
        tool = probe.tool(self.pm)
        if sec.missing_tool and tool is not None:
            self.finding(
                "TOOL_MISSING",
                Severity.BLOCKER if probe.required else Severity.WARNING,
                f"{tool} is not installed (or not on PATH)",
                fix=f"install {tool} on the node" if probe.required else None,
            )
            return None
        return sec

    def parse(self, name: str, sec: Section | None) -> Any:
        """``sec`` read by the table's parser for this package manager; ``None`` (and a
        finding) when it does not parse, ``None`` when there is no section."""
        how = PROBE[name].parser(self.pm)
        if sec is None or how is None or (how.needs_ok and not sec.ok):
            return None
        try:
            return how.fn(sec.output)
        except ParseError as e:
            self.finding("FACT_UNPARSABLE", Severity.WARNING, f"{how.label}: {e}")
            return None

    def parsed(self, name: str) -> Any:
        """The usable section of ``name``, parsed."""
        return self.parse(name, self.usable(name))

    def parsed_if_ok(self, name: str) -> Any:
        """The section of ``name`` parsed if its probe exited 0 (no finding when not)."""
        return self.parse(name, self.ok(name))


def interpret_sections(
    node: str,
    package_manager: str,
    sections: Mapping[str, Section],
    settings: SettingHints = _NATIVE_HINTS,
) -> NodeProbe:
    """The fact script's sections -> a :class:`NodeProbe` with findings for whatever is
    missing or unreadable; ``settings`` names inventory settings in fix hints. Pure."""
    read = _Sections(node, package_manager, sections)
    extra: dict[str, Any] = {}
    os_family = _os_family(read, settings, extra)
    kubeadm, kubelet, kubectl = (read.parsed(n) for n in ("kubeadm", "kubelet", "kubectl"))
    packages: dict[str, PackageFact] = read.parsed("packages") or {}
    holds = read.usable("holds")
    held: frozenset[str] = read.parse("holds", holds) or frozenset()
    repo_minor, excludes = _repo(read, extra)
    if package_manager != "apt":
        held = held | _rpm_locks(read, holds, held, packages, excludes, extra)
    packages = {
        name: PackageFact(p.name, p.version, p.held or name in held) for name, p in packages.items()
    }
    repo_versions: tuple[str, ...] = read.parsed("repo_versions") or ()
    kubelet_config = read.ok("kubelet_config")
    extra["kubelet_config"] = kubelet_config.output if kubelet_config is not None else None
    runtime, cgroup = read.parsed_if_ok("runtime"), read.parsed_if_ok("cgroup")
    extra.update(_raw_texts(read))
    if kubelet is not None:
        extra["kubelet_version_node"] = str(kubelet)
    return NodeProbe(
        reachable=True,
        kubeadm=kubeadm,
        kubelet=kubelet,
        kubectl=kubectl,
        os_family=os_family,
        packages=packages,
        repo_minor=repo_minor,
        repo_versions=repo_versions,
        container_runtime=runtime,
        cgroup=cgroup,
        extra=extra,
        findings=tuple(read.findings),
    )


def _os_family(read: _Sections, settings: SettingHints, extra: dict[str, Any]) -> str | None:
    """The node's OS family from /etc/os-release (its id, version and name into ``extra``),
    with a finding when it is unsupported or does not fit the package manager."""
    osr = read.parsed("os_release")
    if osr is None:
        return None
    extra.update(os_id=osr.id, os_version=osr.version_id, os_name=osr.pretty_name)
    family: str | None = osr.family
    if family is None:
        read.finding("OS_UNSUPPORTED", Severity.WARNING, f"unsupported OS {osr.id!r}")
    elif read.pm in parsers.PACKAGE_MANAGERS and PackageManager(read.pm).os_family != family:
        read.finding(
            "PACKAGE_MANAGER_MISMATCH",
            Severity.BLOCKER,
            f"the inventory says package manager {read.pm!r} but the node "
            f"runs {osr.id} ({family} family)",
            fix=f"set {settings.where('nodes[].package_manager')}",
        )
    return family


def _repo(read: _Sections, extra: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The kubernetes repository file's minor and excludes (its URL and flavour into
    ``extra``), with a finding when it cannot be read or is the legacy repository."""
    sec = read.sections.get("repo")
    how = PROBE["repo"].parser(read.pm)
    assert how is not None
    repo_file = how.label
    if sec is None or not sec.ok:
        summary = parsers.section_summary(sec) if sec else "no output"
        read.finding("REPO_UNKNOWN", Severity.WARNING, f"cannot read {repo_file} ({summary})")
        return None, ()
    try:
        repo: parsers.RepoInfo = how.fn(sec.output)
    except ParseError as e:
        read.finding("REPO_UNKNOWN", Severity.WARNING, f"{repo_file}: {e}")
        return None, ()
    extra.update(repo_url=repo.url, repo_flavour=repo.flavour)
    if repo.excludes:
        extra["repo_excludes"] = list(repo.excludes)
    if repo.flavour == "legacy":
        read.finding(
            "REPO_LEGACY",
            Severity.WARNING,
            f"{repo_file} points at the frozen legacy repository {repo.url}",
            fix="switch to pkgs.k8s.io (one repository per minor)",
        )
    return repo.minor, repo.excludes


def _rpm_locks(
    read: _Sections,
    holds: Section | None,
    locked: frozenset[str],
    packages: Mapping[str, PackageFact],
    excludes: tuple[str, ...],
    extra: dict[str, Any],
) -> frozenset[str]:
    """On a dnf/yum node: the versionlocked kube packages and dnf's major version into
    ``extra``; the packages the repository's ``exclude=`` holds returned."""
    if holds is not None and holds.ok:
        # versionlock entries, apart from the repo's exclude= (the plan releases and
        # restores exactly these around each dnf install)
        extra["versionlocked"] = sorted(locked & set(parsers.KUBE_PACKAGES))
    if read.ok("dnf_version") is not None:
        extra["dnf_major"] = read.parsed_if_ok("dnf_version")
    return frozenset(p for p in packages if parsers.excluded(p, excludes))


def _raw_texts(read: _Sections) -> dict[str, Any]:
    """What the node said that the preflight checks judge (upgrader.core.checks), and
    which files the kube binaries are, whether the node lock and crictl are there."""
    ok = read.ok
    extra: dict[str, Any] = {}
    for section, key in (
        ("kubelet_flags", "kubelet_flags"),
        ("docker_daemon", "docker_daemon_json"),
        ("certs", "certs"),
    ):
        sec = ok(section)
        extra[key] = sec.output if sec is not None else None
    sec = ok("dockerd")
    extra["dockerd_cmdlines"] = (
        [line for line in sec.output.splitlines() if line.strip()] if sec is not None else []
    )
    # which files the kube binaries are and whether a package owns them (binary installs)
    if ok("kube_binaries") is not None:
        extra["kube_binaries"] = {
            b.name: {"path": b.path, "owner": b.owner}
            for b in read.parsed_if_ok("kube_binaries").values()
        }
    if ok("kubelet_unit") is not None:
        extra["kubelet_exec"] = read.parsed_if_ok("kubelet_unit")
    # flock(1) and a root-only /run/upgrader, for the node lock every step command runs under
    sec = read.sections.get("node_lock")
    extra["node_lock"] = None if sec is None or sec.rc is None else sec.ok
    # crictl (cri-tools), through which the etcd snapshot and health check reach etcd
    sec = read.sections.get("crictl")
    if sec is not None and sec.rc is not None:
        extra["crictl"] = sec.ok
    return extra


# --------------------------------------------------------------------------- node side (I/O)


def fact_output_cap(package_manager: str) -> int:
    """The most stdout the fact script may send: every probe at its cap, plus framing."""
    probes = len(fact_probes(package_manager))
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

    def no_facts(message: str, fix: str | None = None) -> NodeProbe:
        """Reached, but the fact script's output is not used."""
        return NodeProbe(
            reachable=True,
            findings=(
                Finding(
                    "FACTS_FAILED", Severity.BLOCKER, f"node {name}: {message}", node=name, fix=fix
                ),
            ),
        )

    # Every probe reads what any user may read, so no sudo: exactly one round trip.
    command = "sh -c " + shlex.quote(fact_script(manager))
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
        return no_facts(f"the fact script timed out after {timeout:.0f}s")
    if result.stdout_dropped:
        # the node ignored the per-probe cap (head -c): not the script we sent, or not
        # the tools it should have; the middle of its output is gone, so none is used
        return no_facts(
            f"the fact script printed more than {cap} bytes (the cap); "
            f"{result.stdout_dropped} bytes dropped, its facts are not used",
            fix="check the node's sh and head: each probe's output is cut on the node",
        )
    sections = parsers.split_sections(result.stdout)
    if not sections:
        detail = " ".join((result.stderr or result.stdout).split())[:300] or "no output"
        return no_facts(
            f"the fact script failed (exit {result.exit_code}): {detail}",
            fix="check that the SSH user can log in and run sh",
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
    findings.extend(_api_findings(nodes, cluster, api_error))
    out: list[NodeFacts] = []
    for n in nodes:
        findings.extend(_node_findings(n, cluster))
        out.append(_node_facts(n, probes[n.name], package_managers.get(n.name), cluster))
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


def _api_findings(
    nodes: Sequence[InventoryNode], cluster: ClusterRead | None, api_error: str | None
) -> list[Finding]:
    """The API unreachable, its read's problems, and cluster nodes the inventory lacks."""
    findings: list[Finding] = []
    if api_error is not None:
        findings.append(
            Finding(
                "API_UNREACHABLE",
                Severity.BLOCKER,
                f"Kubernetes API: {api_error}",
                fix="check the kubeconfig, its context and that the API server is up",
            )
        )
    if cluster is None:
        return findings
    for problem in cluster.problems:
        findings.append(Finding("API_PROBLEM", Severity.WARNING, problem))
    known = {n.name for n in nodes}
    for extra_node in sorted(set(cluster.nodes) - known):
        findings.append(
            Finding(
                "NODE_NOT_IN_INVENTORY",
                Severity.WARNING,
                f"node {extra_node} is in the cluster but not in the inventory: its "
                "kubelet counts for version skew, but it will not be upgraded",
                node=extra_node,
            )
        )
    return findings


def _node_findings(n: InventoryNode, cluster: ClusterRead | None) -> list[Finding]:
    """Where an inventory node and the cluster's view of it disagree."""
    if cluster is None:
        return []
    api = cluster.nodes.get(n.name)
    if api is None:
        return [
            Finding(
                "NODE_NOT_IN_CLUSTER",
                Severity.WARNING,
                f"node {n.name}: no Node object of that name in the cluster",
                node=n.name,
                fix="inventory node names must match the Kubernetes node names",
            )
        ]
    findings: list[Finding] = []
    if api.control_plane_label != (n.role == ROLE_CONTROL_PLANE):
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
    if n.role == ROLE_CONTROL_PLANE and not cluster.control_planes.get(n.name):
        findings.append(
            Finding(
                "MIRROR_PODS_MISSING",
                Severity.WARNING,
                f"node {n.name}: no control-plane mirror pods in kube-system",
                node=n.name,
            )
        )
    return findings


def _node_facts(
    n: InventoryNode, probe: NodeProbe, manager: str | None, cluster: ClusterRead | None
) -> NodeFacts:
    """One node's facts: the API's kubelet version, readiness and runtime win over the
    node's own answers; the role and address come from the inventory."""
    api = cluster.nodes.get(n.name) if cluster is not None else None
    extra = dict(probe.extra)
    if api is not None and api.kubelet_version is None and api.kubelet_version_raw:
        extra["kubelet_version_api"] = api.kubelet_version_raw
    return NodeFacts(
        name=n.name,
        role=n.role,
        address=n.address,
        kubelet=(api.kubelet_version if api is not None else None) or probe.kubelet,
        kubeadm=probe.kubeadm,
        kubectl=probe.kubectl,
        control_plane=cluster.control_planes.get(n.name) if cluster is not None else None,
        ready=api.ready if api is not None else None,
        unschedulable=api.unschedulable if api is not None else False,
        os_family=probe.os_family,
        package_manager=_effective_manager(manager, extra),
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
