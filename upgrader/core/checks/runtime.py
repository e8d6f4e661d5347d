"""Container runtime and Docker daemon: dockershim's removal and a dockerd on plain TCP.

Owns two findings:

* ``DOCKERSHIM_REMOVED`` (blocker) — a node whose runtime is ``docker://`` goes to 1.24 or
  later, where the kubelet no longer talks to Docker itself (dockershim was removed in
  1.24). A kubelet pointed at cri-dockerd (``--container-runtime-endpoint`` or
  ``containerRuntimeEndpoint`` naming ``cri-dockerd``) still reports ``docker://`` and is
  fine.
* ``DOCKERD_TCP_NO_TLS`` (warning) — a dockerd listening on ``tcp://`` without
  ``tlsverify``, from ``/etc/docker/daemon.json`` (``hosts``, ``tlsverify``) or the running
  dockerd's command line (``-H``/``--host``, ``--tlsverify``): whoever reaches that address
  is root on the node. The finding names the address.
* ``DOCKER_DAEMON_JSON_INVALID`` (warning) — daemon.json is not JSON (dockerd would not
  start with it, so this is worth knowing before a restart).

* ``CGROUP_V1_UNSUPPORTED`` (blocker) — a node on cgroup v1 (``stat -fc %T /sys/fs/cgroup/``
  says ``tmpfs``) would get a 1.35+ kubelet, which refuses to start there (KEP-5573:
  ``failCgroupV1`` defaults to true from 1.35). A warning instead when the
  ``kube-system/kubelet-config`` ConfigMap, which ``kubeadm upgrade node`` writes to every
  node, sets ``failCgroupV1: false`` (the kubelet starts, unsupported).
* ``CGROUP_VERSION_UNKNOWN`` (warning) — the same hop, and the node's cgroup version could
  not be read.
* ``CONTAINERD_1X_LAST_MINOR`` (warning) — a node on containerd 1.x goes to 1.35, the last
  minor that supports containerd 1.x (Kubernetes v1.35 release notes).
* ``CONTAINERD_1X_UNSUPPORTED`` (blocker) — a node on containerd 1.x would go past 1.35.

Inputs are the gatherer's ``NodeFacts.container_runtime`` and ``NodeFacts.cgroup`` and its
``NodeFacts.extra`` keys ``kubelet_flags``, ``kubelet_config``, ``docker_daemon_json`` and
``dockerd_cmdlines``.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from upgrader.core.checks.kubelet import parse_kubelet_flags
from upgrader.core.model import Facts, Finding, NodeFacts, Severity
from upgrader.core.versions import KubeVersion

DOCKERSHIM_REMOVED_IN = KubeVersion(1, 24, 0)
CGROUP_V1_REMOVED_IN = KubeVersion(1, 35, 0)
CONTAINERD_1X_LAST = KubeVersion(1, 35, 0)  # the last minor that supports containerd 1.x
RELEASE_NOTES_1_35 = "https://kubernetes.io/blog/2025/12/17/kubernetes-v1-35-release/"
KEP_5573 = "https://git.k8s.io/enhancements/keps/sig-node/5573-remove-cgroup-v1"
CGROUPS_DOC = "https://kubernetes.io/docs/concepts/architecture/cgroups/"


def _runtime_endpoint(n: NodeFacts) -> str | None:
    flags = parse_kubelet_flags(
        n.extra.get("kubelet_flags") if isinstance(n.extra.get("kubelet_flags"), str) else None
    )
    if flags.get("container-runtime-endpoint"):
        return flags["container-runtime-endpoint"]
    text = n.extra.get("kubelet_config")
    if isinstance(text, str):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
        if isinstance(doc, Mapping) and isinstance(doc.get("containerRuntimeEndpoint"), str):
            return str(doc["containerRuntimeEndpoint"])
    return None


def check_runtime(
    facts: Facts, target: KubeVersion, *, nodes: Iterable[str] | None = None
) -> list[Finding]:
    """``DOCKERSHIM_REMOVED`` for each node in ``nodes`` (default: all) on ``docker://``."""
    if target.minor_key < DOCKERSHIM_REMOVED_IN.minor_key:
        return []
    wanted = set(nodes) if nodes is not None else None
    out: list[Finding] = []
    for n in facts.nodes:
        if wanted is not None and n.name not in wanted:
            continue
        rt = n.container_runtime or ""
        if not rt.startswith("docker://"):
            continue
        endpoint = _runtime_endpoint(n)
        if endpoint is not None and "cri-dockerd" in endpoint:
            continue
        out.append(
            Finding(
                "DOCKERSHIM_REMOVED",
                Severity.BLOCKER,
                f"{n.name} runs on the Docker runtime ({rt}) through the kubelet's built-in "
                f"dockershim, which Kubernetes {DOCKERSHIM_REMOVED_IN.minor_str} removed; "
                f"its kubelet cannot go to {target}",
                n.name,
                "move the node to containerd or CRI-O (drain, switch, "
                "--container-runtime-endpoint in /var/lib/kubelet/kubeadm-flags.env and the "
                "node's kubeadm.alpha.kubernetes.io/cri-socket annotation), or install "
                "cri-dockerd and point --container-runtime-endpoint at it",
            )
        )
    return out


# --------------------------------------------------------------------------- dockerd


@dataclass(frozen=True)
class DockerdListen:
    """Where one dockerd configuration listens, and whether clients must present a cert."""

    source: str  # "/etc/docker/daemon.json" or "dockerd command line"
    tcp: tuple[str, ...]
    tlsverify: bool


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("true", "1", "yes"))


def parse_daemon_json(text: str) -> DockerdListen:
    """``/etc/docker/daemon.json``. Raises ValueError when it is not a JSON object."""
    doc = json.loads(text) if text.strip() else {}
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    hosts = doc.get("hosts") or []
    if isinstance(hosts, str):
        hosts = [hosts]
    tcp = tuple(
        str(h) for h in hosts if isinstance(h, str) and h.strip().lower().startswith("tcp://")
    )
    return DockerdListen("/etc/docker/daemon.json", tcp, _truthy(doc.get("tlsverify")))


def parse_dockerd_cmdline(line: str) -> DockerdListen:
    """One running dockerd's arguments (``/proc/PID/cmdline`` with NULs as spaces)."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    tcp: list[str] = []
    tlsverify = False
    i = 0
    while i < len(words):
        w = words[i]
        value: str | None = None
        if w in ("-H", "--host") and i + 1 < len(words):
            value = words[i + 1]
            i += 1
        elif w.startswith(("--host=", "-H=")):
            value = w.split("=", 1)[1]
        elif w.startswith("-H") and len(w) > 2:
            value = w[2:]
        elif w == "--tlsverify":
            tlsverify = True
        elif w.startswith("--tlsverify="):
            tlsverify = _truthy(w.split("=", 1)[1])
        if value is not None and value.lower().startswith("tcp://"):
            tcp.append(value)
        i += 1
    return DockerdListen("dockerd command line", tuple(tcp), tlsverify)


def check_dockerd(facts: Facts, *, nodes: Iterable[str] | None = None) -> list[Finding]:
    """``DOCKERD_TCP_NO_TLS`` / ``DOCKER_DAEMON_JSON_INVALID`` per node."""
    wanted = set(nodes) if nodes is not None else None
    out: list[Finding] = []
    for n in facts.nodes:
        if wanted is not None and n.name not in wanted:
            continue
        configs: list[DockerdListen] = []
        dj = n.extra.get("docker_daemon_json")
        json_tls = False
        if isinstance(dj, str):
            try:
                parsed = parse_daemon_json(dj)
            except ValueError as e:
                out.append(
                    Finding(
                        "DOCKER_DAEMON_JSON_INVALID",
                        Severity.WARNING,
                        f"/etc/docker/daemon.json on {n.name} is not valid: "
                        f"{' '.join(str(e).split())[:160]}",
                        n.name,
                        "fix the file; dockerd refuses to start with it",
                    )
                )
            else:
                configs.append(parsed)
                json_tls = parsed.tlsverify
        for line in n.extra.get("dockerd_cmdlines") or ():
            if isinstance(line, str) and line.strip():
                c = parse_dockerd_cmdline(line)
                # daemon.json's tlsverify applies to the running daemon too
                configs.append(DockerdListen(c.source, c.tcp, c.tlsverify or json_tls))
        exposed: dict[str, str] = {}
        for c in configs:
            if c.tlsverify:
                continue
            for addr in c.tcp:
                exposed.setdefault(addr, c.source)
        if exposed:
            where = ", ".join(f"{a} ({s})" for a, s in exposed.items())
            out.append(
                Finding(
                    "DOCKERD_TCP_NO_TLS",
                    Severity.WARNING,
                    f"dockerd on {n.name} listens on {where} without tlsverify: anyone who "
                    "reaches that address controls the node as root",
                    n.name,
                    'remove the tcp:// host, or set "tlsverify": true with tlscacert/tlscert/'
                    "tlskey in /etc/docker/daemon.json (port 2376), then restart dockerd",
                )
            )
    return out


# --------------------------------------------------------------------------- 1.35 rules


def containerd_major(runtime: str | None) -> int | None:
    """``containerd://1.7.2`` -> 1 (``containerd://v2.0.0`` -> 2); None for other runtimes or
    a version that does not start with a number."""
    if not runtime or not runtime.startswith("containerd://"):
        return None
    head = runtime.split("://", 1)[1].lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def tolerates_cgroup_v1(kubelet_configmap: str | None) -> bool:
    """True when the kubelet-config ConfigMap's KubeletConfiguration sets
    ``failCgroupV1: false`` (what ``kubeadm upgrade node`` writes to each node)."""
    if kubelet_configmap is None:
        return False
    try:
        doc = yaml.safe_load(kubelet_configmap)
    except yaml.YAMLError:
        return False
    return isinstance(doc, Mapping) and doc.get("failCgroupV1") is False


def check_runtime_support(
    facts: Facts,
    target: KubeVersion,
    *,
    nodes: Iterable[str] | None = None,
    kubelet_configmap: str | None = None,
) -> list[Finding]:
    """The 1.35 rules for each node in ``nodes`` (default: all): cgroup v1 and containerd 1.x.
    ``kubelet_configmap`` is the ``kubelet`` key of ``kube-system/kubelet-config`` (None: not
    read)."""
    wanted = set(nodes) if nodes is not None else None
    out: list[Finding] = []
    cgroup_rule = target.minor_key >= CGROUP_V1_REMOVED_IN.minor_key
    tolerated = tolerates_cgroup_v1(kubelet_configmap)
    for n in facts.nodes:
        if wanted is not None and n.name not in wanted:
            continue
        if cgroup_rule:
            out += _cgroup(n, target, tolerated)
        out += _containerd(n, target)
    return out


def _cgroup(n: NodeFacts, target: KubeVersion, tolerated: bool) -> list[Finding]:
    """cgroup v1 on a node whose kubelet goes to 1.35 or later (a warning when the
    kubelet-config ConfigMap tolerates it), or a cgroup version that could not be read."""
    out: list[Finding] = []
    if n.cgroup == "v1":
        message = (
            f"{n.name} runs on cgroup v1 (stat -fc %T /sys/fs/cgroup/ says tmpfs); from "
            f"Kubernetes {CGROUP_V1_REMOVED_IN.minor_str} the kubelet refuses to start on "
            f"cgroup v1 (failCgroupV1 defaults to true), so its kubelet cannot go to {target}"
        )
        if tolerated:
            out.append(
                Finding(
                    "CGROUP_V1_UNSUPPORTED",
                    Severity.WARNING,
                    message.replace("refuses to start", "by default refuses to start")
                    + "; the kube-system/kubelet-config ConfigMap sets failCgroupV1: false, "
                    "so it will start, unsupported",
                    n.name,
                    f"move the node to cgroup v2 ({CGROUPS_DOC}); see {KEP_5573}",
                )
            )
        else:
            out.append(
                Finding(
                    "CGROUP_V1_UNSUPPORTED",
                    Severity.BLOCKER,
                    message,
                    n.name,
                    f"move the node to cgroup v2 before the upgrade ({CGROUPS_DOC}); or, "
                    "unsupported, set failCgroupV1: false in the kube-system/kubelet-config "
                    f"ConfigMap. Source: Kubernetes v1.35 release notes ({RELEASE_NOTES_1_35}) "
                    f"and {KEP_5573}",
                )
            )
    elif n.cgroup is None and n.reachable:
        out.append(
            Finding(
                "CGROUP_VERSION_UNKNOWN",
                Severity.WARNING,
                f"the cgroup version of {n.name} could not be read; a kubelet of "
                f"{CGROUP_V1_REMOVED_IN.minor_str} or later refuses to start on cgroup v1",
                n.name,
                f"check by hand: stat -fc %T /sys/fs/cgroup/ must say cgroup2fs ({CGROUPS_DOC})",
            )
        )
    return out


def _containerd(n: NodeFacts, target: KubeVersion) -> list[Finding]:
    """containerd 1.x on a node whose kubelet goes past (or to) its last minor."""
    major = containerd_major(n.container_runtime)
    if major is None or major >= 2:
        return []
    if target.minor_key > CONTAINERD_1X_LAST.minor_key:
        return [
            Finding(
                "CONTAINERD_1X_UNSUPPORTED",
                Severity.BLOCKER,
                f"{n.name} runs {n.container_runtime}: Kubernetes "
                f"{CONTAINERD_1X_LAST.minor_str} is the last minor that supports containerd "
                f"1.x, so its kubelet cannot go to {target}",
                n.name,
                "upgrade containerd to 2.0 or later on the node (drain it first) before "
                f"going past {CONTAINERD_1X_LAST.minor_str}. Source: Kubernetes v1.35 "
                f"release notes ({RELEASE_NOTES_1_35})",
            )
        ]
    if target.minor_key == CONTAINERD_1X_LAST.minor_key:
        return [
            Finding(
                "CONTAINERD_1X_LAST_MINOR",
                Severity.WARNING,
                f"{n.name} runs {n.container_runtime}: Kubernetes "
                f"{CONTAINERD_1X_LAST.minor_str} is the last minor that supports containerd "
                "1.x; the next minor needs containerd 2.0 or later",
                n.name,
                "plan the move to containerd 2.0 or later before the next upgrade. Source: "
                f"Kubernetes v1.35 release notes ({RELEASE_NOTES_1_35})",
            )
        ]
    return []
