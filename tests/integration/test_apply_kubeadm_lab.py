"""``upgrader apply`` end to end against the lab's kubeadm as upstream has it: a
``kubeadm upgrade apply`` that failed after one of its phases (the ClusterConfiguration
already uploaded) is not taken for done and a second ``apply`` completes it
(``cmd/kubeadm/app/phases/upgrade/postupgrade.go``; the command is idempotent); the
override flags the operator gave reach ``kubeadm upgrade apply``
(``cmd/kubeadm/app/phases/upgrade/policy.go``). One lab per scenario."""

from __future__ import annotations

import json
from collections.abc import Callable

from apply_kit import ADDONS, Lab, cluster_spec, lab_node


def _addon_images(lab: Lab) -> tuple[str, str]:
    dns = json.loads(lab.kubectl("-n", "kube-system", "get", "deployment", "coredns", "-o", "json"))
    ds = json.loads(
        lab.kubectl("-n", "kube-system", "get", "daemonset", "kube-proxy", "-o", "json")
    )
    return (
        dns["spec"]["template"]["spec"]["containers"][0]["image"],
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
    )


def test_an_apply_failed_after_its_kubelet_config_phase_is_run_again(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(
        cluster_spec(
            "v1.28.4",
            workers=1,
            workloads=ADDONS,
            faults=[
                {
                    "node": "cp-1",
                    "match": "kubeadm upgrade apply v1.29.2",
                    "after_phase": "kubelet-config",
                    "stderr": "error writing kubelet configuration to file",
                }
            ],
        )
    )
    before = _addon_images(lab)
    assert before == (
        "registry.k8s.io/coredns/coredns:v1.10.1",
        "registry.k8s.io/kube-proxy:v1.28.4",
    )
    first = lab.apply("--skip-etcd-snapshot", to="v1.29.2")
    assert first.returncode == 1, first.stdout + first.stderr
    cfg = lab.kubectl("-n", "kube-system", "get", "configmap", "kubeadm-config", "-o", "json")
    assert "kubernetesVersion: v1.29.2" in json.loads(cfg)["data"]["ClusterConfiguration"]
    assert _addon_images(lab) == before  # the addon phases never ran
    step = lab.state_doc()["steps"]["v1.29.2/cp-1/first-control-plane/kubeadm-upgrade-apply"]
    assert step["status"] == "failed"

    second = lab.apply("--skip-etcd-snapshot", to="v1.29.2")
    assert second.returncode == 0, second.stdout + second.stderr
    applies = [c for c in lab.calls("cp-1") if c.startswith("kubeadm upgrade apply")]
    assert applies == ["kubeadm upgrade apply v1.29.2 -y"] * 2  # run again, not "done"
    assert _addon_images(lab) == (
        "registry.k8s.io/coredns/coredns:v1.11.1",  # kubeadm 1.29's CoreDNS
        "registry.k8s.io/kube-proxy:v1.29.2",
    )
    # the new kubeadm pulled its own images (1.29's etcd and CoreDNS tags)
    pulls = [c for c in lab.calls("cp-1") if c.startswith("kubeadm config images pull")]
    assert pulls[0] == (
        "kubeadm config images pull --kubernetes-version v1.29.2 --image-repository registry.k8s.io"
    )
    store = json.loads((lab.dir / "nodes/cp-1/root/var/lib/upgrader-lab/images.json").read_text())
    assert "registry.k8s.io/coredns/coredns:v1.11.1" in store
    assert "registry.k8s.io/etcd:3.5.10-0" in store


def test_force_with_a_kubelet_kubeadm_refuses_reaches_kubeadm_upgrade_apply(
    make_lab: Callable[..., Lab],
) -> None:
    """kubeadm 1.28 refuses a kubelet more than one minor below the target; --force passes
    it in upgrader's plan and on kubeadm's command line (the lab's kubeadm refuses the
    same apply without it)."""
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [lab_node("cp-1", "control-plane"), lab_node("w-1", kubelet="v1.25.16")],
            "workloads": ADDONS,
        }
    )
    r = lab.apply("--force", "--skip-etcd-snapshot", to="v1.28.4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KUBEADM_KUBELET_TOO_OLD" in r.stdout and "(passed by --force)" in r.stdout
    assert "kubeadm upgrade apply v1.28.4 -y --force" in r.stdout  # the plan shows it
    applies = [c for c in lab.calls("cp-1") if c.startswith("kubeadm upgrade apply")]
    assert applies == ["kubeadm upgrade apply v1.28.4 -y --force"]
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {"cp-1": "v1.28.4", "w-1": "v1.28.4"}


def test_a_docs_style_half_upgraded_ha_cluster_is_finished(
    make_lab: Callable[..., Lab],
) -> None:
    """kubernetes.io "Upgrading kubeadm clusters": cp-1 is upgraded completely (apply,
    then its kubelet) before cp-2 and cp-3; stopped there, cp-1's kubelet is newer than
    cp-2's kube-apiserver. The plan's control-plane steps resolve that: a warning, and
    apply finishes the job (the last `kubeadm upgrade node` applies the addons, 1.28+)."""
    old = "v1.27.8"
    behind = {"kubelet": old, "kubeadm": old, "kubectl": old}
    lab = make_lab(
        {
            "version": "v1.28.4",
            "nodes": [
                lab_node("cp-1", "control-plane"),
                lab_node("cp-2", "control-plane", control_plane=old, **behind),
                lab_node("cp-3", "control-plane", control_plane=old, **behind),
                lab_node("w-1", **behind),
            ],
            "workloads": [
                {**ADDONS[0], "image": "registry.k8s.io/coredns/coredns:v1.10.1"},
                {**ADDONS[1], "image": f"registry.k8s.io/kube-proxy:{old}"},
            ],
        }
    )
    r = lab.apply("--skip-etcd-snapshot", to="v1.28.4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SKEW_KUBELET_TOO_NEW" in r.stdout
    assert "the plan's control-plane steps resolve it: cp-2, cp-3 moved to v1.28.4" in " ".join(
        r.stdout.split()
    )
    assert not any(c.startswith("kubeadm upgrade apply") for c in lab.calls("cp-1"))
    for cp in ("cp-2", "cp-3"):
        assert sum(c.startswith("kubeadm upgrade node") for c in lab.calls(cp)) == 1
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {
        n: "v1.28.4" for n in ("cp-1", "cp-2", "cp-3", "w-1")
    }
    assert _addon_images(lab) == (
        "registry.k8s.io/coredns/coredns:v1.10.1",
        "registry.k8s.io/kube-proxy:v1.28.4",
    )


def test_a_release_candidate_from_a_mirrored_registry(
    make_lab: Callable[..., Lab],
) -> None:
    """A pre-release target with --allow-release-candidate-upgrades: the packages are
    found as 1.28.0~rc.1-1.1, kubeadm gets the opt-in, and the new kubeadm pulls its
    images from the cluster's imageRepository (kubeadm-config), not registry.k8s.io."""
    registry = "mirror.example.test/k8s"
    lab = make_lab(
        cluster_spec(
            "v1.27.8",
            workers=1,
            image_repository=registry,
            prerelease_packages=["v1.28.0-rc.1"],
            workloads=ADDONS,
        )
    )
    target = "v1.28.0-rc.1"
    refused = lab.apply("--skip-etcd-snapshot", to=target)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "PRERELEASE_TARGET" in refused.stdout
    r = lab.apply("--allow-release-candidate-upgrades", "--skip-etcd-snapshot", to=target)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = lab.calls("cp-1")
    assert [c for c in calls if c.startswith("kubeadm upgrade apply")] == [
        f"kubeadm upgrade apply {target} -y --allow-release-candidate-upgrades"
    ]
    assert (
        f"kubeadm config images pull --kubernetes-version {target} --image-repository {registry}"
        in calls
    )
    assert any("kubeadm=1.28.0~rc.1-1.1" in c for c in calls)
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {"cp-1": target, "w-1": target}
    assert _addon_images(lab) == (f"{registry}/coredns:v1.10.1", f"{registry}/kube-proxy:{target}")
