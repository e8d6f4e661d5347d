"""Kube binaries that no package owns: a binary install (Kubespray's layout).

Owns one finding, ``BINARY_INSTALL``: on a node the run upgrades, ``kubeadm`` or
``kubelet`` (as ``command -v`` finds them) belong to no package (``dpkg-query -S`` /
``rpm -qf``), or the kubelet unit's ``ExecStart`` runs a kubelet other than the packaged
one. Kubespray installs the binaries into ``/usr/local/bin`` (``bin_dir``,
roles/kubespray_defaults/defaults/main/main.yml) and points its kubelet unit there
(roles/kubernetes/node/templates/kubelet.service.j2): installing the pkgs.k8s.io packages
would put new binaries into ``/usr/bin`` beside the old ones, which stay first on PATH and
in the unit, so the node would report success and keep running the old kubelet. That is a
**blocker**, found before anything runs. Only ``kubectl`` unowned (a hand-installed client)
is a warning: the run works, but that kubectl shadows the packaged one.

Inputs: ``NodeFacts.extra["kube_binaries"]`` (``{name: {"path", "owner"}}``; absent when
the probe gave nothing, which is not judged) and ``extra["kubelet_exec"]``.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from upgrader.core.model import Facts, Finding, NodeFacts, Severity

CODE = "BINARY_INSTALL"
FIX = (
    "upgrade a Kubespray cluster with Kubespray's upgrade-cluster.yml (or whatever "
    "installed these binaries), or migrate the node to the pkgs.k8s.io packages first "
    "(install the packages at the running version, remove the binaries, point the kubelet "
    "unit at /usr/bin/kubelet), then run upgrader again"
)


def _binaries(n: NodeFacts) -> Mapping[str, Mapping[str, Any]] | None:
    raw = n.extra.get("kube_binaries")
    if not isinstance(raw, Mapping):
        return None
    return {str(k): v for k, v in raw.items() if isinstance(v, Mapping) and v.get("path")}


def binary_install_finding(n: NodeFacts) -> Finding | None:
    """The finding for one node, or ``None`` when its kube binaries are packaged."""
    found = _binaries(n)
    if found is None:
        return None
    unowned = {name: str(b["path"]) for name, b in found.items() if not b.get("owner")}
    packaged_kubelet = found.get("kubelet", {})
    exec_path = n.extra.get("kubelet_exec")
    stray_unit = (
        isinstance(exec_path, str)
        and exec_path.startswith("/")
        and (exec_path != packaged_kubelet.get("path") or not packaged_kubelet.get("owner"))
    )
    blocking = bool({"kubeadm", "kubelet"} & set(unowned)) or stray_unit
    if not unowned and not stray_unit:
        return None
    names = [b for b in ("kubeadm", "kubelet", "kubectl") if b in unowned]
    dirs = sorted({posixpath.dirname(p) for p in unowned.values()})
    parts = []
    if names:
        parts.append(
            f"{', '.join(names)} in {', '.join(dirs)} {'belongs' if len(names) == 1 else 'belong'}"
            " to no package"
        )
    if stray_unit:
        parts.append(f"the kubelet unit runs {exec_path}")
    if blocking:
        message = (
            f"node {n.name}: {' and '.join(parts)} (a Kubespray-style binary install): "
            "installing the kubeadm/kubelet/kubectl packages would put new binaries in "
            "/usr/bin beside these, and the old ones would stay in use"
        )
        return Finding(CODE, Severity.BLOCKER, message, node=n.name, fix=FIX)
    message = (
        f"node {n.name}: {' and '.join(parts)}: it shadows the packaged kubectl on PATH "
        "and stays at its version"
    )
    return Finding(
        CODE,
        Severity.WARNING,
        message,
        node=n.name,
        fix=f"remove {unowned['kubectl']} or update it yourself after the run",
    )


def check_binary_install(facts: Facts, *, nodes: Iterable[str]) -> list[Finding]:
    """``BINARY_INSTALL`` for each node in ``nodes`` whose kube binaries no package owns."""
    wanted = set(nodes)
    out: list[Finding] = []
    for n in facts.nodes:
        if n.name not in wanted or not n.reachable:
            continue
        finding = binary_install_finding(n)
        if finding is not None:
            out.append(finding)
    return out
