"""Node flavors end to end: ``upgrader apply`` on a lab with a Rocky 9 (dnf4) and a Fedora 41
(dnf5) worker, and a Kubespray worker refused at plan time.

Upstream sources the lab follows (and these tests hold the product to): dnf4's cache rule
(rpm-software-management/dnf ``dnf/base.py`` ``Base._finalize_base``: packages saved by
``--downloadonly`` are deleted by the next successful transaction unless ``keepcache``),
dnf-plugins-core ``plugins/versionlock.py`` (locks exclude other versions), dnf5's
argument parser (``--disableexcludes`` is an unknown argument; kubernetes/website#52027
uses ``--setopt=disable_excludes=kubernetes``), Kubespray's ``bin_dir`` and
``roles/kubernetes/node/templates/kubelet.service.j2``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from apply_kit import ONE_WORKER_LOAD, TARGET, Lab, all_at, lab_node
from cli_run import cli

from upgrader_lab.node import wrapper

pytestmark = pytest.mark.integration

WORKLOAD = [
    {"kind": "Deployment", "name": "web", "replicas": 2},
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
]


def run_ok(lab: Lab, node: str, command: str) -> str:
    """``command`` on ``node`` through the lab's wrapper (what its sshd ForceCommand runs)."""
    proc = wrapper.run_on_node(lab.dir, node, command)
    assert proc.returncode == 0, f"{command!r} on {node}: {proc.stderr}"
    return proc.stdout


def _node_calls(lab: Lab, node: str, word: str) -> list[str]:
    return [c for c in lab.calls(node) if c.startswith(("dnf ", "yum ")) and word in c]


def test_rhel_and_fedora_workers_upgrade_with_their_own_dnf(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [
                lab_node("cp-1", "control-plane"),
                # versionlocked kubelet and kubectl (the versionlock plugin installed)
                lab_node("r-1", flavor="rhel", held=["kubelet", "kubectl"]),
                lab_node("f-1", flavor="fedora", held=["kubeadm"]),
            ],
            "workloads": WORKLOAD,
        }
    )
    node = json.loads(lab.kubectl("get", "node", "f-1", "-o", "json"))
    assert node["status"]["nodeInfo"]["osImage"] == "Fedora Linux 41 (Server Edition)"
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    # dnf5 never got a dnf4 flag; dnf4 did not need dnf5's
    assert not [c for c in lab.calls("f-1") if "--disableexcludes" in c]
    assert _node_calls(lab, "f-1", "--setopt=disable_excludes=kubernetes")
    assert not [c for c in lab.calls("r-1") if c.startswith("dnf") and "disable_excludes" in c]
    # dnf4: the kubeadm install kept the cache, so the pre-staged kubelet and kubectl were
    # not fetched again while the node was drained (a second `dnf install` fetch would
    # show as a non-skipped download: the lab counts downloads in the package db)
    kubeadm_installs = _node_calls(lab, "r-1", "install -y kubeadm-")
    assert kubeadm_installs and all("--setopt=keepcache=1" in c for c in kubeadm_installs)
    for node in ("r-1", "f-1"):
        db = json.loads(
            (lab.dir / "nodes" / node / "root" / "var/lib/upgrader-lab/packages.json").read_text()
        )
        assert sorted(db["fetched"]) == [
            "kubeadm=1.28.4-150500.1.1",
            "kubectl=1.28.4-150500.1.1",
            "kubelet=1.28.4-150500.1.1",
        ], node  # each package fetched once: by the prestage download
    # versionlocks: released around each dnf command and restored on exactly those packages
    assert run_ok(lab, "r-1", "dnf -q versionlock list").split() == [
        "kubectl-0:1.28.4-150500.1.1.*",
        "kubelet-0:1.28.4-150500.1.1.*",
    ]
    f_locks = run_ok(lab, "f-1", "dnf -q versionlock list")
    assert "Package name: kubeadm\nevr = 1.28.4-150500.1.1" in f_locks
    assert "kubelet" not in f_locks
    for node in ("r-1", "f-1"):
        assert (
            run_ok(lab, node, "rpm -q --qf '%{VERSION}\\n' kubeadm kubelet kubectl").split()
            == ["1.28.4"] * 3
        )


def test_kubespray_worker_is_refused_at_plan_time_and_nothing_runs(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [lab_node("cp-1", "control-plane"), lab_node("k-1", flavor="kubespray")],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    plan = cli("plan", "-i", str(lab.inventory), "--to", TARGET)
    assert plan.returncode != 0
    text = plan.stdout + plan.stderr
    assert "BINARY_INSTALL" in text
    assert "k-1" in text and "/usr/local/bin" in text and "upgrade-cluster.yml" in text
    r = lab.apply()
    assert r.returncode != 0 and "BINARY_INSTALL" in r.stdout + r.stderr
    for node in ("cp-1", "k-1"):
        assert lab.changes(node) == [], node
        assert not [c for c in lab.calls(node) if "--download" in c]
    assert {n: v["kubelet"] for n, v in lab.nodes().items()} == {
        "cp-1": "v1.27.8",
        "k-1": "v1.27.8",
    }
