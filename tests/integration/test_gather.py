"""gather_facts end to end: simulated nodes behind a real sshd, a real HTTPS API stub."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_nodes import FakeNodes
from kubeapi_stub import StubAPI, kubeadm_config, list_doc, mirror_pod, node_obj, version_doc
from sshd import free_port

from upgrader.core.model import ControlPlaneVersions, Facts, PackageFact, Severity
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError
from upgrader.gather import GatherInventory, gather_facts
from upgrader.kube.client import make_api_client
from upgrader.kube.retry import RetryPolicy
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHPool

pytestmark = pytest.mark.integration

V = KubeVersion.parse
FAST_API = RetryPolicy(attempts=2, max_time=10, initial=0.01, max_delay=0.05, jitter=0.01)

CP1, W1, W2, W3, W4 = (f"127.0.0.{i}" for i in (11, 12, 13, 14, 15))


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    role: str


@dataclass
class StandInInventory:
    """The few attributes of upgrader.inventory.Inventory that gather_facts uses."""

    cluster_name: str
    nodes: list[Node]
    targets: dict[str, SSHTarget]
    kubeconfig: Path | None
    kubeconfig_context: str | None = None
    managers: dict[str, str] = field(default_factory=dict)

    def ssh_target(self, node: Node | str) -> SSHTarget:
        return self.targets[node if isinstance(node, str) else node.name]

    def package_manager_for(self, node: Node | str) -> str:
        return self.managers.get(node if isinstance(node, str) else node.name, "apt")

    def kubeconfig_path(self) -> Path | None:
        return self.kubeconfig


def _typed(inv: StandInInventory) -> GatherInventory:
    return inv  # the stand-in satisfies the protocol (checked by mypy)


def fast_pool() -> SSHPool:
    return SSHPool(connect_attempts=2, retry_wait=0.01, retry_max_wait=0.02)


def build(fake: FakeNodes, tmp_path: Path, kubeconfig: Path | None) -> StandInInventory:
    fake.kube_node(CP1, version="v1.28.4")
    fake.kube_node(W1, version="v1.28.4")  # binary upgraded, kubelet not restarted yet
    fake.kube_node(
        W2, version="v1.27.8", pkgver="1.27.8-1.1", repo_minor="1.27", missing=["kubeadm"]
    )
    fake.reset(W4)
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(fake.server.host_key_line(a) for a in (CP1, W1, W2)))
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    s = fake.server
    targets = {
        "cp-1": s.target("cp-1", kh, host=CP1),
        "w-1": s.target("w-1", kh, host=W1),
        "w-2": s.target("w-2", kh, host=W2),
        "w-3": s.target("w-3", kh, host=W3, port=free_port(W3)),  # nothing listens
        "w-4": s.target("w-4", empty, host=W4),  # host key unknown
    }
    nodes = [
        Node("cp-1", CP1, "control-plane"),
        Node("w-1", W1, "worker"),
        Node("w-2", W2, "worker"),
        Node("w-3", W3, "worker"),
        Node("w-4", W4, "worker"),
    ]
    return StandInInventory("lab", nodes, targets, kubeconfig)


def fill_api(stub: StubAPI) -> None:
    stub.json("/version", version_doc("v1.28.4"))
    stub.json("/api/v1/namespaces/kube-system/configmaps/kubeadm-config", kubeadm_config("v1.28.4"))
    nodes = [
        node_obj("cp-1", "v1.28.4", control_plane=True),
        node_obj("w-1", "v1.27.8", unschedulable=True),
        node_obj("w-2", "v1.27.8"),
        node_obj("w-3", "v1.27.8", ready="Unknown"),
        node_obj("w-4", "v1.27.8"),
    ]
    stub.json("/api/v1/nodes", list_doc("NodeList", nodes))
    pods = [
        mirror_pod(c, "cp-1", "v1.28.4")
        for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ] + [mirror_pod("etcd", "cp-1", "3.5.9-0")]
    stub.json("/api/v1/namespaces/kube-system/pods", list_doc("PodList", pods))


def test_gather_facts(fake_nodes_sshd: FakeNodes, kube_stub: StubAPI, tmp_path: Path) -> None:
    fill_api(kube_stub)
    inv = build(fake_nodes_sshd, tmp_path, kube_stub.kubeconfig(tmp_path / "kubeconfig"))
    with fast_pool() as pool:
        facts = gather_facts(_typed(inv), pool=pool, max_workers=4, api_policy=FAST_API)
        # the pool stays open for the caller: the same connection serves the next command
        assert pool.get(inv.ssh_target("cp-1")).run("echo reuse", sudo=False).ok
        assert fake_nodes_sshd.sessions(CP1) == 2

    assert [n.name for n in facts.nodes] == ["cp-1", "w-1", "w-2", "w-3", "w-4"]
    assert facts.cluster.name == "lab"
    assert facts.cluster.version == V("v1.28.4") and facts.cluster.apiserver_version == V("v1.28.4")
    assert facts.gathered_at

    cp = facts.node("cp-1")
    assert cp.role == "control-plane" and cp.address == CP1 and cp.reachable
    assert (cp.kubelet, cp.kubeadm, cp.kubectl) == (V("v1.28.4"),) * 3
    assert cp.control_plane == ControlPlaneVersions(
        V("v1.28.4"), V("v1.28.4"), V("v1.28.4"), "3.5.9-0"
    )
    assert cp.packages["kubeadm"] == PackageFact("kubeadm", "1.28.4-1.1", held=True)
    assert (cp.os_family, cp.package_manager, cp.repo_minor) == ("debian", "apt", "1.28")
    assert cp.repo_versions == ("1.28.4-1.1", "1.28.3-1.1", "1.28.0-1.1")
    assert cp.ready is True and cp.container_runtime == "containerd://1.7.2"
    assert "readOnlyPort: 0" in cp.extra["kubelet_config"]
    assert cp.extra["node_lock"] is True  # flock, and /run/upgrader root-only

    w1 = facts.node("w-1")
    assert w1.kubelet == V("v1.27.8")  # the API's answer wins over the binary's
    assert w1.extra["kubelet_version_node"] == "v1.28.4"
    assert w1.unschedulable

    w2 = facts.node("w-2")
    assert w2.kubeadm is None and w2.repo_minor == "1.27" and "kubeadm" not in w2.packages

    w3, w4 = facts.node("w-3"), facts.node("w-4")
    assert not w3.reachable and not w4.reachable
    assert w3.kubelet == V("v1.27.8") and w3.ready is None  # the API still knows them

    by_code = {(f.code, f.node): f for f in facts.findings}
    assert set(by_code) == {
        ("TOOL_MISSING", "w-2"),
        ("NODE_UNREACHABLE", "w-3"),
        ("HOST_KEY_REJECTED", "w-4"),
    }
    assert by_code[("TOOL_MISSING", "w-2")].severity == Severity.BLOCKER
    assert "kubeadm" in by_code[("TOOL_MISSING", "w-2")].message
    assert "node w-3" in by_code[("NODE_UNREACHABLE", "w-3")].message
    assert f"{W4}:" in by_code[("HOST_KEY_REJECTED", "w-4")].message

    # one SSH round trip per reachable node
    assert [fake_nodes_sshd.sessions(a) for a in (W1, W2)] == [1, 1]
    # JSON out and back
    assert Facts.from_dict(json.loads(json.dumps(facts.to_dict()))).to_dict() == facts.to_dict()


def test_gather_with_the_api_down(
    fake_nodes_sshd: FakeNodes, kube_stub: StubAPI, tmp_path: Path
) -> None:
    dead = kube_stub.kubeconfig(tmp_path / "kubeconfig", url=f"https://127.0.0.1:{free_port()}")
    inv = build(fake_nodes_sshd, tmp_path, dead)
    inv.nodes = inv.nodes[:3]
    with fast_pool() as pool:
        facts = gather_facts(_typed(inv), pool=pool, api_policy=FAST_API)
    codes = [(f.code, f.severity) for f in facts.findings]
    assert ("API_UNREACHABLE", Severity.BLOCKER) in codes
    assert ("CLUSTER_VERSION_ESTIMATED", Severity.WARNING) in codes
    assert facts.cluster.version == V("v1.28.4")  # cp-1's kubelet --version
    assert facts.node("w-1").kubelet == V("v1.28.4")  # no API: the node's own answer
    assert facts.node("cp-1").ready is None


def test_given_api_client_and_private_pool(
    fake_nodes_sshd: FakeNodes, kube_stub: StubAPI, tmp_path: Path
) -> None:
    fill_api(kube_stub)
    inv = build(fake_nodes_sshd, tmp_path, kubeconfig=None)
    inv.nodes = inv.nodes[:1]
    api = make_api_client(kube_stub.kubeconfig(tmp_path / "kc"), None)
    facts = gather_facts(_typed(inv), api_client=api, api_policy=FAST_API)
    assert [n.name for n in facts.nodes] == ["cp-1"]
    assert {f.code for f in facts.findings} == {"NODE_NOT_IN_INVENTORY"}


def test_bad_kubeconfig_fails_before_touching_nodes(
    fake_nodes_sshd: FakeNodes, tmp_path: Path
) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("clusters: [unclosed\n")
    inv = build(fake_nodes_sshd, tmp_path, bad)
    with pytest.raises(ConfigError, match="kubeconfig"):
        gather_facts(_typed(inv), pool=fast_pool())
    assert fake_nodes_sshd.sessions(CP1) == 0
