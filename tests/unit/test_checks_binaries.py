"""BINARY_INSTALL: kube binaries no package owns (Kubespray's layout: bin_dir
/usr/local/bin in roles/kubespray_defaults/defaults/main/main.yml, ExecStart={{ bin_dir
}}/kubelet in roles/kubernetes/node/templates/kubelet.service.j2)."""

from __future__ import annotations

from typing import Any

from upgrader.core.checks.binaries import check_binary_install
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.versions import KubeVersion

PACKAGED = {
    "kubeadm": {"path": "/usr/bin/kubeadm", "owner": "kubeadm"},
    "kubelet": {"path": "/usr/bin/kubelet", "owner": "kubelet"},
    "kubectl": {"path": "/usr/bin/kubectl", "owner": "kubectl"},
}
KUBESPRAY = {
    name: {"path": f"/usr/local/bin/{name}", "owner": None}
    for name in ("kubeadm", "kubelet", "kubectl")
}


def facts(**extra_by_node: dict[str, Any]) -> Facts:
    nodes = tuple(
        NodeFacts(name=name.replace("_", "-"), role="worker", extra=extra)
        for name, extra in extra_by_node.items()
    )
    return Facts(ClusterFacts("c", KubeVersion.parse("v1.27.8")), nodes)


def test_kubespray_node_is_a_blocker_that_names_the_layout_and_the_way_out() -> None:
    f = facts(
        w_1={"kube_binaries": KUBESPRAY, "kubelet_exec": "/usr/local/bin/kubelet"},
        w_2={"kube_binaries": PACKAGED, "kubelet_exec": "/usr/bin/kubelet"},
    )
    out = check_binary_install(f, nodes=["w-1", "w-2"])
    assert [(x.code, x.severity, x.node) for x in out] == [
        ("BINARY_INSTALL", Severity.BLOCKER, "w-1")
    ]
    assert out[0].message == (
        "node w-1: kubeadm, kubelet, kubectl in /usr/local/bin belong to no package and the "
        "kubelet unit runs /usr/local/bin/kubelet (a Kubespray-style binary install): "
        "installing the kubeadm/kubelet/kubectl packages would put new binaries in /usr/bin "
        "beside these, and the old ones would stay in use"
    )
    assert out[0].fix is not None and "upgrade-cluster.yml" in out[0].fix
    # nodes the run does not touch are not judged
    assert check_binary_install(f, nodes=["w-2"]) == []


def test_a_unit_pointing_past_the_packaged_kubelet_blocks_and_a_stray_kubectl_warns() -> None:
    f = facts(
        w_1={"kube_binaries": PACKAGED, "kubelet_exec": "/opt/bin/kubelet"},
        w_2={
            "kube_binaries": {**PACKAGED, "kubectl": KUBESPRAY["kubectl"]},
            "kubelet_exec": "/usr/bin/kubelet",
        },
        w_3={},  # probe gave nothing: not judged
    )
    out = {x.node: x for x in check_binary_install(f, nodes=["w-1", "w-2", "w-3"])}
    assert set(out) == {"w-1", "w-2"}
    assert out["w-1"].severity is Severity.BLOCKER
    assert "the kubelet unit runs /opt/bin/kubelet" in out["w-1"].message
    assert out["w-2"].severity is Severity.WARNING
    assert "kubectl in /usr/local/bin belongs to no package" in out["w-2"].message
