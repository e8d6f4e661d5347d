"""The gatherer's pure parts: fact-script sections -> NodeProbe, and probes + API -> Facts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from upgrader.core.model import ControlPlaneVersions, Facts, PackageFact, Severity
from upgrader.core.parsers import Section
from upgrader.core.versions import KubeVersion
from upgrader.errors import KubernetesError
from upgrader.gather import NodeProbe, interpret_sections, merge_facts
from upgrader.kube.readers import ClusterRead, NodeRead

V = KubeVersion.parse

UBUNTU = 'PRETTY_NAME="Ubuntu 22.04.3 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n'
ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n'
KUBELET_CONFIG = "kind: KubeletConfiguration\nreadOnlyPort: 0\n"


def sec(name: str, output: str, rc: int = 0) -> tuple[str, Section]:
    return name, Section(name, output, rc)


def apt_sections(**override: str | Section) -> dict[str, Section]:
    """An apt node's sections; ``override``: a section's output (exit code 0) or the whole
    Section."""
    s = dict(
        [
            sec("os_release", UBUNTU),
            sec("kubeadm", "v1.28.4\n"),
            sec("kubelet", "Kubernetes v1.28.4\n"),
            sec("kubectl", '{"clientVersion": {"gitVersion": "v1.28.4"}}\n'),
            sec(
                "packages",
                "kubeadm 1.28.4-1.1 hold ok installed\n"
                "kubelet 1.28.4-1.1 install ok installed\n"
                "kubectl 1.28.4-1.1 install ok installed\n",
            ),
            sec("holds", "kubeadm\nkubelet\n"),
            sec(
                "repo",
                "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
                "https://pkgs.k8s.io/core:/stable:/v1.28/deb/ /\n",
            ),
            sec(
                "repo_versions",
                "   kubeadm | 1.28.4-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages\n"
                "   kubeadm | 1.28.3-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages\n",
            ),
            sec("kubelet_config", KUBELET_CONFIG),
            sec("runtime", "runtime=containerd\ncontainerd containerd.io 1.6.21 3dce8eb0\n"),
        ]
    )
    s.update(sec(k, v) if isinstance(v, str) else (k, v) for k, v in override.items())
    return s


def codes(probe: NodeProbe) -> list[str]:
    return [f.code for f in probe.findings]


def test_apt_node() -> None:
    p = interpret_sections("w-1", "apt", apt_sections())
    assert p.findings == ()
    assert (p.kubeadm, p.kubelet, p.kubectl) == (V("v1.28.4"),) * 3
    assert p.os_family == "debian"
    assert p.packages == {
        "kubeadm": PackageFact("kubeadm", "1.28.4-1.1", held=True),
        "kubelet": PackageFact("kubelet", "1.28.4-1.1", held=True),  # from apt-mark showhold
        "kubectl": PackageFact("kubectl", "1.28.4-1.1", held=False),
    }
    assert p.repo_minor == "1.28"
    assert p.repo_versions == ("1.28.4-1.1", "1.28.3-1.1")
    assert p.container_runtime == "containerd://1.6.21"
    assert p.extra["kubelet_config"] == KUBELET_CONFIG
    assert p.extra["repo_flavour"] == "pkgs.k8s.io"
    assert p.extra["os_id"] == "ubuntu"


def test_missing_tools_are_findings_naming_the_node() -> None:
    p = interpret_sections(
        "w-2",
        "apt",
        apt_sections(
            kubeadm=Section("kubeadm", "sh: 1: kubeadm: not found\n", 127),
            kubectl=Section("kubectl", "sh: 1: kubectl: not found\n", 127),
        ),
    )
    by_tool = {f.message: f for f in p.findings}
    assert codes(p) == ["TOOL_MISSING", "TOOL_MISSING"]
    kubeadm = by_tool["node w-2: kubeadm is not installed (or not on PATH)"]
    assert kubeadm.severity == Severity.BLOCKER and kubeadm.node == "w-2"
    kubectl = by_tool["node w-2: kubectl is not installed (or not on PATH)"]
    assert kubectl.severity == Severity.WARNING
    assert p.kubeadm is None and p.kubelet == V("v1.28.4")


def test_partial_dpkg_output_and_unparsable_version() -> None:
    p = interpret_sections(
        "w-3",
        "apt",
        apt_sections(
            packages=Section(
                "packages",
                "dpkg-query: no packages found matching kubectl\n"
                "kubeadm 1.28.4-1.1 hold ok installed\n",
                1,
            ),
            kubelet=Section("kubelet", "Segmentation fault\n", 139),
        ),
    )
    assert set(p.packages) == {"kubeadm"}
    assert codes(p) == ["FACT_UNPARSABLE"]
    assert "w-3" in p.findings[0].message and "kubelet" in p.findings[0].message


def test_repo_problems() -> None:
    missing = interpret_sections(
        "n",
        "apt",
        apt_sections(repo=Section("repo", "cat: /etc/apt/...: No such file or directory\n", 1)),
    )
    assert codes(missing) == ["REPO_UNKNOWN"] and missing.repo_minor is None
    legacy = interpret_sections(
        "n",
        "apt",
        apt_sections(repo="deb https://apt.kubernetes.io/ kubernetes-xenial main\n"),
    )
    assert codes(legacy) == ["REPO_LEGACY"] and legacy.extra["repo_flavour"] == "legacy"


def test_os_and_package_manager_mismatch() -> None:
    p = interpret_sections("n", "dnf", apt_sections())
    assert "PACKAGE_MANAGER_MISMATCH" in codes(p)
    odd = interpret_sections("n", "apt", apt_sections(os_release="ID=arch\n"))
    assert codes(odd) == ["OS_UNSUPPORTED"]


def test_dnf_node_with_excludes_and_versionlock() -> None:
    s = apt_sections(
        os_release=ROCKY,
        packages=Section(
            "packages",
            "kubeadm 1.28.4-150500.1.1\nkubelet 1.28.4-150500.1.1\n"
            "package kubectl is not installed\n",
            1,
        ),
        holds="kubelet-0:1.28.4-150500.1.1.*\n",
        repo=(
            "[kubernetes]\nname=Kubernetes\nbaseurl=https://pkgs.k8s.io/core:/stable:/v1.28/rpm/\n"
            "enabled=1\nexclude=kubeadm cri-tools\n"
        ),
        repo_versions=(
            "Available Packages\n"
            "kubeadm.x86_64     1.28.3-150500.1.1     kubernetes\n"
            "kubeadm.x86_64     1.28.4-150500.1.1     kubernetes\n"
        ),
    )
    p = interpret_sections("r-1", "dnf", s)
    assert p.findings == ()
    assert p.os_family == "rhel"
    assert p.packages == {
        "kubeadm": PackageFact("kubeadm", "1.28.4-150500.1.1", held=True),  # excluded
        "kubelet": PackageFact("kubelet", "1.28.4-150500.1.1", held=True),  # versionlock
    }
    assert p.repo_versions == ("1.28.3-150500.1.1", "1.28.4-150500.1.1")


def test_dnf5_node_is_planned_as_dnf5_and_its_versionlocks_are_kept_apart() -> None:
    """dnf5 (Fedora 41: dnf5/main.cpp `dnf5 version`, versionlock list as `Package name:`);
    the repo's exclude= marks a package held but is no versionlock to release."""
    s = apt_sections(
        os_release="ID=fedora\nVERSION_ID=41\n",
        dnf_version="dnf5 version 5.2.8.1\ndnf5 plugin API version 2.0\n",
        packages=(
            "kubeadm 1.27.8-150500.1.1\nkubelet 1.27.8-150500.1.1\nkubectl 1.27.8-150500.1.1\n"
        ),
        holds="Package name: kubelet\nevr = 1.27.8-150500.1.1\n",
        repo=(
            "[kubernetes]\nbaseurl=https://pkgs.k8s.io/core:/stable:/v1.27/rpm/\n"
            "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
        ),
        repo_versions=(
            "Installed packages\nkubeadm.x86_64  1.27.8-150500.1.1  kubernetes\n\n"
            "Available packages\nkubeadm.x86_64  1.27.9-150500.1.1  kubernetes\n"
        ),
        kube_binaries=(
            "kubeadm /usr/bin/kubeadm kubeadm\nkubelet /usr/bin/kubelet kubelet\n"
            "kubectl /usr/bin/kubectl kubectl\n"
        ),
    )
    p = interpret_sections("f-1", "dnf", s)
    assert p.findings == ()
    assert p.extra["dnf_major"] == 5
    assert p.extra["versionlocked"] == ["kubelet"]
    assert all(f.held for f in p.packages.values())  # exclude= covers all three
    assert p.repo_versions == ("1.27.9-150500.1.1",)
    assert p.extra["kube_binaries"]["kubeadm"] == {"path": "/usr/bin/kubeadm", "owner": "kubeadm"}
    assert _planned_managers("dnf", p) == {"cp-1": "apt", "f-1": "dnf5"}
    # a dnf4 node the inventory calls dnf5 is planned as dnf
    s4 = dict(s, dnf_version=Section("dnf_version", "4.14.0\n  Installed: dnf-0:4.14.0\n", 0))
    p4 = interpret_sections("f-1", "dnf5", s4)
    assert _planned_managers("dnf5", p4)["f-1"] == "dnf"


def _planned_managers(inventory_says: str, probe: NodeProbe) -> dict[str, str | None]:
    """The package manager of each node in the facts merged from an apt cp-1 and worker
    f-1 (``probe``, which the inventory calls ``inventory_says``), the API down."""
    facts = merge_facts(
        "c",
        [N("cp-1", "10.0.0.1", "control-plane"), N("f-1", "10.0.0.3", "worker")],
        {"cp-1": "apt", "f-1": inventory_says},
        {"cp-1": interpret_sections("cp-1", "apt", apt_sections()), "f-1": probe},
        None,
        api_error="down",
    )
    return {n.name: n.package_manager for n in facts.nodes}


def test_no_section_at_all_is_a_finding() -> None:
    s = apt_sections()
    del s["kubelet"]
    p = interpret_sections("n", "apt", s)
    assert codes(p) == ["FACTS_FAILED"]


# --------------------------------------------------------------------------- merge


@dataclass(frozen=True)
class N:
    name: str
    address: str
    role: str


NODES = [N("cp-1", "10.0.0.1", "control-plane"), N("w-1", "10.0.0.2", "worker")]
PMS = {"cp-1": "apt", "w-1": "apt"}
CP = ControlPlaneVersions(V("v1.28.4"), V("v1.28.4"), V("v1.28.4"), "3.5.9-0")


def node_read(name: str, kubelet: str, cp: bool = False, **kw: object) -> NodeRead:
    fields: dict[str, object] = dict(
        name=name,
        kubelet_version=V(kubelet),
        kubelet_version_raw=kubelet,
        ready=True,
        unschedulable=False,
        container_runtime="containerd://1.7.2",
        control_plane_label=cp,
    )
    fields.update(kw)
    return NodeRead(**fields)  # type: ignore[arg-type]


def probes() -> dict[str, NodeProbe]:
    cp = interpret_sections("cp-1", "apt", apt_sections())
    w = interpret_sections("w-1", "apt", apt_sections())
    return {"cp-1": cp, "w-1": w}


def test_merge_prefers_the_api() -> None:
    cluster = ClusterRead(
        apiserver_version=V("v1.28.4"),
        kubeadm_version=V("v1.28.4"),
        nodes={
            "cp-1": node_read("cp-1", "v1.28.4", cp=True),
            "w-1": node_read("w-1", "v1.27.8", unschedulable=True, ready=False),
        },
        control_planes={"cp-1": CP},
    )
    facts = merge_facts("demo", NODES, PMS, probes(), cluster, gathered_at="t")
    assert facts.findings == ()
    assert facts.cluster.name == "demo" and facts.cluster.version == V("v1.28.4")
    w = facts.node("w-1")
    assert w.kubelet == V("v1.27.8")  # the API's, not the binary's v1.28.4
    assert w.extra["kubelet_version_node"] == "v1.28.4"
    assert (w.ready, w.unschedulable, w.role, w.address) == (False, True, "worker", "10.0.0.2")
    assert w.container_runtime == "containerd://1.7.2"
    assert facts.node("cp-1").control_plane == CP and w.control_plane is None
    # the whole thing is JSON and reads back
    again = Facts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again.to_dict() == facts.to_dict()


def test_merge_findings_about_inventory_and_cluster() -> None:
    cluster = ClusterRead(
        apiserver_version=V("v1.28.4"),
        kubeadm_version=None,
        nodes={
            "cp-1": node_read("cp-1", "v1.28.4", cp=False),
            "stray": node_read("stray", "v1.27.8"),
        },
        control_planes={},
        problems=("GET configmap kube-system/kubeadm-config: not found (not a kubeadm cluster?)",),
    )
    facts = merge_facts("demo", NODES, PMS, probes(), cluster)
    got = {(f.code, f.node) for f in facts.findings}
    assert got == {
        ("API_PROBLEM", None),
        ("NODE_NOT_IN_INVENTORY", "stray"),
        ("NODE_NOT_IN_CLUSTER", "w-1"),
        ("ROLE_MISMATCH", "cp-1"),
        ("MIRROR_PODS_MISSING", "cp-1"),
        ("CLUSTER_VERSION_ESTIMATED", None),
    }
    assert facts.cluster.version == V("v1.28.4")  # from /version
    assert facts.node("w-1").kubelet == V("v1.28.4")  # from the node itself


def test_merge_without_api_estimates_from_control_plane_kubelets() -> None:
    p = probes()
    p["w-1"] = NodeProbe(reachable=False)
    facts = merge_facts("demo", NODES, PMS, p, None, api_error="GET /version: no response")
    codes_ = [f.code for f in facts.findings]
    assert codes_ == ["API_UNREACHABLE", "CLUSTER_VERSION_ESTIMATED"]
    assert facts.findings[0].severity == Severity.BLOCKER
    assert facts.cluster.version == V("v1.28.4") and facts.cluster.apiserver_version is None
    assert facts.node("w-1").reachable is False and facts.node("cp-1").ready is None


def test_merge_without_any_version_raises() -> None:
    p = {"cp-1": NodeProbe(reachable=False), "w-1": NodeProbe(reachable=False)}
    with pytest.raises(KubernetesError, match="cannot determine the cluster version: boom"):
        merge_facts("demo", NODES, PMS, p, None, api_error="boom")


def test_crictl_probe_and_kubeadm_etcd_reach_the_facts() -> None:
    """The crictl probe (``crictl --version``) and kubeadm-config's etcd section are the
    facts behind ETCD_SNAPSHOT_UNAVAILABLE."""
    there = interpret_sections("cp-1", "apt", apt_sections(crictl="crictl version v1.28.0"))
    assert there.extra["crictl"] is True
    missing = interpret_sections(
        "cp-1", "apt", apt_sections(crictl=Section("crictl", "sh: 1: crictl: not found", 127))
    )
    assert missing.extra["crictl"] is False and "TOOL_MISSING" not in codes(missing)
    assert "crictl" not in interpret_sections("cp-1", "apt", apt_sections()).extra
    external = ("https://10.0.0.5:2379",)
    cluster = ClusterRead(
        apiserver_version=V("v1.28.4"),
        kubeadm_version=V("v1.28.4"),
        nodes={"cp-1": node_read("cp-1", "v1.28.4", cp=True)},
        control_planes={"cp-1": CP},
        etcd_external=external,
    )
    facts = merge_facts("demo", NODES, PMS, probes(), cluster, gathered_at="t")
    assert facts.cluster.etcd_external == external
    assert Facts.from_dict(json.loads(json.dumps(facts.to_dict()))).cluster.etcd_external == (
        external
    )
