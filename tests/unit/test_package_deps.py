"""cri-tools and kubernetes-cni around the kube package steps (issue 11 item 2) and the
repository/lock behaviour of the default playbook (item 9), on sample facts.

kubernetes/release ``cmd/krel/templates/latest/metadata.yaml``: kubeadm Depends on
cri-tools, kubelet on kubernetes-cni; apt's resolver never moves a held package, so a held
cri-tools must be released for the install and held again."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from upgrader.core.model import Facts, PackageFact, Plan, Severity
from upgrader.core.planner import PlanOptions, RepoConfig, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.versions import KubeVersion

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"


def _facts() -> Facts:
    return Facts.from_dict(json.loads((DATA / "one-cp-two-workers.json").read_text()))


def _plan(f: Facts, **kw: Any) -> Plan:
    return build_plan(
        f,
        KubeVersion.parse("v1.28.4"),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), **kw),
    )


def _hold_cri_tools(f: Facts, node: str) -> Facts:
    def held(n: Any) -> Any:
        if n.name != node:
            return n
        pkgs = dict(n.packages)
        pkgs["cri-tools"] = PackageFact("cri-tools", "1.27.0-1.1", held=True)
        pkgs["kubernetes-cni"] = PackageFact("kubernetes-cni", "1.2.0-2.1", held=False)
        return replace(n, packages=pkgs)

    return replace(f, nodes=tuple(held(n) for n in f.nodes))


def _step(p: Plan, node: str, name: str) -> str:
    return next(
        s.command or "" for e in p.entries if e.node == node for s in e.steps if s.name == name
    )


def test_a_held_cri_tools_is_released_and_held_again_and_the_plan_says_so() -> None:
    p = _plan(_hold_cri_tools(_facts(), "w-1"))
    kubeadm = _step(p, "w-1", "kubeadm-package")
    assert "apt-mark unhold kubeadm cri-tools && " in kubeadm
    assert kubeadm.endswith("&& apt-mark hold kubeadm cri-tools")
    kubelet = _step(p, "w-1", "kubelet-kubectl-packages")
    assert "apt-mark unhold kubelet kubectl cri-tools && " in kubelet
    assert kubelet.endswith("apt-mark hold kubelet kubectl cri-tools")
    # only the node where it is held; kubernetes-cni is not held there
    assert "cri-tools" not in _step(p, "w-2", "kubeadm-package")
    found = [f for f in p.findings if f.code == "PACKAGE_DEPENDENCY_HELD"]
    assert [(f.node, f.severity) for f in found] == [("w-1", Severity.INFO)]
    assert "cri-tools held" in found[0].message
    assert not p.blockers


def test_a_held_dependency_is_named_in_the_prestage_download() -> None:
    p = _plan(_hold_cri_tools(_facts(), "w-1"), prestage=True)
    download = _step(p, "w-1", "download-packages")
    assert download.endswith("kubectl=1.28.4-1.1 cri-tools") or download.endswith(
        'kubectl="$pkgver" cri-tools'
    )


def test_package_installs_wait_for_the_dpkg_lock() -> None:
    p = _plan(_facts())
    cmd = _step(p, "w-1", "kubeadm-package")
    assert cmd.startswith("apt-get -o DPkg::Lock::Timeout=300 check >/dev/null && ")
    assert "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=" in cmd


def test_the_repository_key_is_refreshed_on_every_visit_but_not_for_legacy() -> None:
    f = _facts()
    f = replace(f, nodes=tuple(replace(n, repo_minor="1.28") for n in f.nodes))
    p = _plan(f)  # every node's repository is at the target minor already
    for e in p.entries:
        if e.phase == "prestage":
            continue
        assert e.steps[0].name == "package-repository", (e.node, e.phase)
        assert "curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.28/deb/Release.key" in (
            e.steps[0].command or ""
        )
    legacy = _plan(f, repository=RepoConfig("legacy"))
    assert all(s.name != "package-repository" for s in legacy.steps)
