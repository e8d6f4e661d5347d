"""The lab's kubeadm against its upstream sources (kubernetes/kubernetes, read at the
v1.31/v1.32 tree): phases of ``upgrade apply`` and a failure after a named phase
(``cmd/kubeadm/app/cmd/upgrade/apply.go``, ``cmd/kubeadm/app/phases/upgrade/postupgrade.go``),
the 1.28+ rule that addons wait for the last control plane
(``UnupgradedControlPlaneInstances`` there, ``cmd/kubeadm/app/cmd/phases/upgrade/apply/addons.go``),
the image list of ``config images`` (``cmd/kubeadm/app/images/images.go``), cobra's
``unknown flag``, ``--config`` documents (``cmd/kubeadm/app/util/config/upgradeconfiguration.go``)
and pre-release targets (``cmd/kubeadm/app/phases/upgrade/policy.go``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lab_nodes import Lab, kube, started_lab

pytestmark = pytest.mark.integration

REGISTRY = "registry.example.test/k8s"

# the node tools themselves, driven as root (the non-root login: test_lab_sudo.py)
SPEC: dict[str, Any] = {
    "ssh_user": "root",
    "version": "v1.28.4",
    "image_repository": REGISTRY,
    "prerelease_packages": ["v1.29.0-rc.1"],
    "nodes": [
        {"name": "cp-1", "role": "control-plane"},
        {"name": "cp-2", "role": "control-plane"},
        {"name": "w-1", "role": "worker"},
    ],
    "workloads": [
        {"kind": "Deployment", "namespace": "kube-system", "name": "coredns", "replicas": 1},
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
    ],
    "faults": [
        {
            "node": "cp-1",
            "match": "kubeadm upgrade apply v1.28.5",
            "after_phase": "kubelet-config",
            "stderr": "error writing kubelet configuration to file",
        }
    ],
    "delays": {"kubelet_ready": 0.3},
}

INSTALL = (
    "apt-get update -q >/dev/null && apt-get install -y --allow-change-held-packages "
    "kubeadm={v} >/dev/null"
)


@pytest.fixture(scope="module")
def klab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with started_lab(tmp_path_factory.mktemp("lab") / "kubeadm-lab", SPEC) as the_lab:
        yield the_lab


def addon_images(lab: Lab) -> tuple[str, str]:
    from kubernetes import client, config

    api = client.AppsV1Api(config.new_client_from_config(config_file=str(lab.dir / "kubeconfig")))  # type: ignore[no-untyped-call]
    dns = api.read_namespaced_deployment("coredns", "kube-system")
    proxy = api.read_namespaced_daemon_set("kube-proxy", "kube-system")
    return (
        dns.spec.template.spec.containers[0].image,
        proxy.spec.template.spec.containers[0].image,
    )


def cluster_configuration(lab: Lab) -> str:
    cm = kube(lab).read_namespaced_config_map("kubeadm-config", "kube-system")
    return str(cm.data["ClusterConfiguration"])


def test_images_use_the_running_kubeadms_list_and_the_given_repository(klab: Lab) -> None:
    """images.go: kube-* at --kubernetes-version, CoreDNS/pause at the running kubeadm's
    constants, etcd from its table; CoreDNS under coredns/ only in registry.k8s.io."""
    out = klab.ok(
        "cp-1",
        f"kubeadm config images list --kubernetes-version v1.29.0 --image-repository {REGISTRY}",
    )
    assert out.splitlines() == [
        f"{REGISTRY}/kube-apiserver:v1.29.0",
        f"{REGISTRY}/kube-controller-manager:v1.29.0",
        f"{REGISTRY}/kube-scheduler:v1.29.0",
        f"{REGISTRY}/kube-proxy:v1.29.0",
        f"{REGISTRY}/coredns:v1.10.1",  # kubeadm 1.28's CoreDNS, not 1.29's v1.11.1
        f"{REGISTRY}/pause:3.9",
        f"{REGISTRY}/etcd:3.5.9-0",
    ]
    default = klab.ok("cp-1", "kubeadm config images list")
    assert "registry.k8s.io/coredns/coredns:v1.10.1" in default.splitlines()
    assert "registry.k8s.io/kube-apiserver:v1.28.4" in default.splitlines()
    klab.ok(
        "cp-1",
        "printf 'apiVersion: kubeadm.k8s.io/v1beta3\\nkind: ClusterConfiguration\\n"
        f"kubernetesVersion: v1.28.5\\nimageRepository: {REGISTRY}\\n' > /etc/kubernetes/c.yaml",
    )
    out = klab.ok("cp-1", "kubeadm config images pull --config /etc/kubernetes/c.yaml")
    assert f"[config/images] Pulled {REGISTRY}/kube-apiserver:v1.28.5" in out
    store = json.loads((klab.dir / "nodes/cp-1/root/var/lib/upgrader-lab/images.json").read_text())
    assert f"{REGISTRY}/kube-scheduler:v1.28.5" in store
    assert f"{REGISTRY}/kube-scheduler:v1.28.4" in store  # what the node started with


def test_flags_are_checked_per_command_as_cobra_does(klab: Lab) -> None:
    r = klab.run("cp-1", "kubeadm upgrade apply v1.28.4 --bogus -y")
    assert r.rc == 1 and r.err.startswith("unknown flag: --bogus\n")
    r = klab.run("cp-2", "kubeadm upgrade node --force")  # apply's flag, not node's
    assert r.rc == 1 and r.err.startswith("unknown flag: --force\n")
    r = klab.run("cp-1", "kubeadm config images pull --etcd-upgrade=false")
    assert r.rc == 1 and r.err.startswith("unknown flag: --etcd-upgrade\n")
    r = klab.run("cp-1", "kubeadm upgrade apply v1.28.4 -y --etcd-upgrade=maybe")
    assert r.rc == 1 and r.err.startswith(
        'invalid argument "maybe" for "--etcd-upgrade" flag: strconv.ParseBool: parsing '
        '"maybe": invalid syntax\n'
    )
    r = klab.run("cp-1", "kubeadm upgrade apply v1.28.4 -y --patches /etc/kubernetes/nope")
    assert r.rc == 1 and 'could not list patch files for path "/etc/kubernetes/nope"' in r.err
    klab.ok(
        "cp-1",
        "printf 'apiVersion: kubeadm.k8s.io/v1beta4\\nkind: UpgradeConfiguration\\n' "
        "> /etc/kubernetes/u.yaml",
    )
    r = klab.run("cp-1", "kubeadm upgrade plan --config /etc/kubernetes/u.yaml")
    assert r.rc == 1  # kubeadm 1.28 has no UpgradeConfiguration kind
    assert 'no kind "UpgradeConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"' in (
        r.err
    )


def test_apply_failing_after_a_phase_is_completed_by_a_rerun(klab: Lab) -> None:
    """A fault after kubelet-config: the ClusterConfiguration and the static pods moved,
    the addons did not; the rerun (idempotent upstream) completes, and since 1.28 the
    addons wait for cp-2, whose `upgrade node` applies them."""
    before = addon_images(klab)
    assert before == (f"{REGISTRY}/coredns:v1.10.1", f"{REGISTRY}/kube-proxy:v1.28.4")
    klab.ok("cp-1", INSTALL.format(v="1.28.5-1.1"))
    r = klab.run("cp-1", "kubeadm upgrade apply v1.28.5 -y")
    assert r.rc == 1
    assert r.err.startswith(
        "error execution phase kubelet-config: error writing kubelet configuration to file\n"
    )
    assert "kubernetesVersion: v1.28.5" in cluster_configuration(klab)
    assert f"imageRepository: {REGISTRY}" in cluster_configuration(klab)
    assert f"image: {REGISTRY}/kube-apiserver:v1.28.5" in klab.ok(
        "cp-1", "cat /etc/kubernetes/manifests/kube-apiserver.yaml"
    )
    assert addon_images(klab) == before
    out = klab.ok("cp-1", "kubeadm upgrade apply v1.28.5 -y")
    assert "Current and new manifests of kube-apiserver are equal, skipping upgrade" in out
    assert (
        "[upgrade/addons] skip upgrade addons because control plane instances [cp-2] have not "
        "been upgraded" in out
    )
    assert '[upgrade/successful] SUCCESS! Your cluster was upgraded to "v1.28.5". Enjoy!' in out
    assert addon_images(klab) == before
    klab.ok("cp-2", INSTALL.format(v="1.28.5-1.1"))
    out = klab.ok("cp-2", "kubeadm upgrade node")
    assert "[addons] Applied essential addon: kube-proxy" in out
    assert addon_images(klab) == (f"{REGISTRY}/coredns:v1.10.1", f"{REGISTRY}/kube-proxy:v1.28.5")


def test_a_release_candidate_needs_the_opt_in(klab: Lab) -> None:
    """policy.go: an unstable target is refused unless --allow-*-upgrades; the package
    of a pre-release is spelled with '~' (1.29.0~rc.1-1.1)."""
    klab.ok("cp-1", "sed -i 's#/v1.28/#/v1.29/#' /etc/apt/sources.list.d/kubernetes.list")
    madison = klab.ok("cp-1", "apt-get update -q >/dev/null && apt-cache madison kubeadm")
    # the real apt-cache madison, against the lab's own pkgs.k8s.io-layout server
    assert any(
        line.startswith("   kubeadm | 1.29.0~rc.1-1.1 | https://")
        and line.endswith("/core:/stable:/v1.29/deb  Packages")
        for line in madison.splitlines()
    ), madison
    klab.ok("cp-1", INSTALL.format(v="1.29.0~rc.1-1.1"))
    assert klab.ok("cp-1", "kubeadm version -o short") == "v1.29.0-rc.1\n"
    r = klab.run("cp-1", "kubeadm upgrade apply v1.29.0-rc.1 -y")
    assert r.rc == 1
    assert (
        'Specified version to upgrade to "v1.29.0-rc.1" is an unstable version and such '
        "upgrades weren't allowed via setting the --allow-*-upgrades flags" in r.err
    )
    out = klab.ok(
        "cp-1", "kubeadm upgrade apply v1.29.0-rc.1 -y --allow-release-candidate-upgrades"
    )
    assert 'Your cluster was upgraded to "v1.29.0-rc.1"' in out
    assert "kubernetesVersion: v1.29.0-rc.1" in cluster_configuration(klab)
    assert Path(klab.dir / "nodes/cp-1/root/etc/kubernetes/manifests/kube-apiserver.yaml").is_file()
