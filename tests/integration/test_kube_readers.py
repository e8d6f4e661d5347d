"""make_api_client and read_cluster against a real HTTPS server (TLS verified, token auth)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kubeapi_stub import (
    StubAPI,
    kubeadm_config,
    list_doc,
    mirror_pod,
    node_obj,
    paged,
    plain_pod,
    version_doc,
)
from kubernetes.client import ApiClient
from sshd import free_port

from upgrader.core.model import ControlPlaneVersions
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError, KubernetesError
from upgrader.kube.client import make_api_client
from upgrader.kube.readers import read_cluster
from upgrader.kube.retry import RetryPolicy

pytestmark = pytest.mark.integration

V = KubeVersion.parse
FAST = RetryPolicy(attempts=3, max_time=20, initial=0.01, max_delay=0.05, jitter=0.01)


def fill_cluster(stub: StubAPI, *, page: int = 500) -> None:
    stub.json("/version", version_doc("v1.28.4"))
    stub.json("/api/v1/namespaces/kube-system/configmaps/kubeadm-config", kubeadm_config("v1.28.4"))
    nodes = [
        node_obj("cp-1", "v1.28.4", control_plane=True),
        node_obj("cp-2", "v1.27.8", control_plane=True, ready="Unknown"),
        node_obj("w-1", "v1.27.8", unschedulable=True),
        node_obj("w-2", "v1.27.8", ready="False", runtime="cri-o://1.27.1"),
    ]
    stub.routes["/api/v1/nodes"] = paged("NodeList", nodes, page)
    pods = [
        mirror_pod("kube-apiserver", "cp-1", "v1.28.4"),
        mirror_pod("kube-controller-manager", "cp-1", "v1.28.4", digest=True),
        mirror_pod("kube-scheduler", "cp-1", "v1.28.4"),
        mirror_pod("etcd", "cp-1", "3.5.9-0"),
        mirror_pod("kube-apiserver", "cp-2", "v1.27.8"),
        mirror_pod("kube-controller-manager", "cp-2", "v1.27.8"),
        mirror_pod("kube-scheduler", "cp-2", "v1.27.8"),
        plain_pod("kube-proxy-abcde", "w-1", "registry.k8s.io/kube-proxy:v1.27.8"),
        plain_pod("coredns-5dd5756b68-x", "w-2", "registry.k8s.io/coredns/coredns:v1.10.1"),
    ]
    # a pod labelled like a control-plane component but not a mirror pod is ignored
    impostor = mirror_pod("kube-apiserver", "w-1", "v9.9.9")
    del impostor["metadata"]["annotations"]
    pods.append(impostor)
    stub.routes["/api/v1/namespaces/kube-system/pods"] = paged("PodList", pods, page)


def client_for(stub: StubAPI, tmp_path: Path) -> ApiClient:
    return make_api_client(stub.kubeconfig(tmp_path / "kubeconfig"), None)


# --------------------------------------------------------------------------- read_cluster


def test_read_cluster(kube_stub: StubAPI, tmp_path: Path) -> None:
    fill_cluster(kube_stub, page=3)
    got = read_cluster(client_for(kube_stub, tmp_path), policy=FAST)
    assert got.apiserver_version == V("v1.28.4")
    assert got.kubeadm_version == V("v1.28.4")
    assert got.image_repository == "registry.k8s.io"  # ClusterConfiguration.imageRepository
    assert got.problems == ()
    assert set(got.nodes) == {"cp-1", "cp-2", "w-1", "w-2"}
    cp1, cp2, w1, w2 = (got.nodes[n] for n in ("cp-1", "cp-2", "w-1", "w-2"))
    assert (cp1.kubelet_version, cp1.ready, cp1.unschedulable, cp1.control_plane_label) == (
        V("v1.28.4"),
        True,
        False,
        True,
    )
    assert cp2.ready is None  # Ready=Unknown
    assert w1.unschedulable and not w1.control_plane_label and w1.ready is True
    assert w2.ready is False and w2.container_runtime == "cri-o://1.27.1"
    # the Node objects' labels, as the selector (--selector, --group-by) reads them
    assert w2.labels == {"kubernetes.io/hostname": "w-2", "kubernetes.io/os": "linux"}
    assert cp1.labels["node-role.kubernetes.io/control-plane"] == ""
    assert got.control_planes == {
        "cp-1": ControlPlaneVersions(V("v1.28.4"), V("v1.28.4"), V("v1.28.4"), "3.5.9-0"),
        "cp-2": ControlPlaneVersions(V("v1.27.8"), V("v1.27.8"), V("v1.27.8"), None),
    }
    # pagination was followed: continue tokens were sent for both lists
    assert any("/api/v1/nodes?" in r and "continue=3" in r for r in kube_stub.requests)
    assert any("/pods?" in r and "continue=6" in r for r in kube_stub.requests)


def test_missing_kubeadm_config_and_odd_tags_are_problems(
    kube_stub: StubAPI, tmp_path: Path
) -> None:
    fill_cluster(kube_stub)
    del kube_stub.routes["/api/v1/namespaces/kube-system/configmaps/kubeadm-config"]
    kube_stub.json(
        "/api/v1/namespaces/kube-system/pods",
        list_doc("PodList", [mirror_pod("kube-scheduler", "cp-1", "latest")]),
    )
    got = read_cluster(client_for(kube_stub, tmp_path), policy=FAST)
    assert got.kubeadm_version is None and got.apiserver_version == V("v1.28.4")
    assert any("kubeadm-config: not found" in p for p in got.problems)
    assert any("kube-scheduler-cp-1" in p and "'latest'" in p for p in got.problems)
    assert got.control_planes["cp-1"].scheduler is None


def test_transient_errors_are_retried(
    kube_stub: StubAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill_cluster(kube_stub)
    kube_stub.sequence(
        "/version",
        [
            (503, {"message": "etcdserver: leader changed"}),
            (500, {}),
            (200, version_doc("v1.28.4")),
        ],
    )
    with caplog.at_level(logging.WARNING):
        got = read_cluster(client_for(kube_stub, tmp_path), policy=FAST)
    assert got.apiserver_version == V("v1.28.4")
    assert sum(r.startswith("/version") for r in kube_stub.requests) == 3
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_persistent_5xx_is_one_kubernetes_error(kube_stub: StubAPI, tmp_path: Path) -> None:
    fill_cluster(kube_stub)
    kube_stub.json("/api/v1/nodes", {"message": "boom"}, status=503)
    with pytest.raises(KubernetesError, match="LIST nodes: 503") as exc:
        read_cluster(client_for(kube_stub, tmp_path), policy=FAST)
    assert "\n" not in str(exc.value)
    assert sum(r.startswith("/api/v1/nodes") for r in kube_stub.requests) == 3


def test_forbidden_is_not_retried(kube_stub: StubAPI, tmp_path: Path) -> None:
    fill_cluster(kube_stub)
    kube_stub.json(
        "/api/v1/nodes",
        {"kind": "Status", "message": 'nodes is forbidden: User "x" cannot list resource'},
        status=403,
    )
    with pytest.raises(KubernetesError, match=r"LIST nodes: 403 .*forbidden"):
        read_cluster(client_for(kube_stub, tmp_path), policy=FAST)
    assert sum(r.startswith("/api/v1/nodes") for r in kube_stub.requests) == 1


def test_connection_refused_is_a_kubernetes_error(kube_stub: StubAPI, tmp_path: Path) -> None:
    kc = kube_stub.kubeconfig(tmp_path / "kc", url=f"https://127.0.0.1:{free_port()}")
    with pytest.raises(KubernetesError, match="GET /version"):
        read_cluster(make_api_client(kc, None), policy=FAST)


def test_tls_verification_failure_is_not_retried(tmp_path: Path, kube_stub: StubAPI) -> None:
    fill_cluster(kube_stub)
    other = StubAPI(tmp_path / "other").start()  # a CA that did not sign kube_stub's cert
    try:
        kc = other.kubeconfig(tmp_path / "kc", url=kube_stub.url)
        with pytest.raises(KubernetesError, match="TLS verification failed"):
            read_cluster(make_api_client(kc, None), policy=FAST)
    finally:
        other.stop()
    assert kube_stub.requests == []


# --------------------------------------------------------------------------- make_api_client


def test_client_uses_context_and_kubeconfig_env(
    kube_stub: StubAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_cluster(kube_stub)
    kc = kube_stub.kubeconfig(tmp_path / "from-env")
    monkeypatch.setenv("KUBECONFIG", str(kc))
    api = make_api_client(None, "stub")
    assert read_cluster(api, policy=FAST).apiserver_version == V("v1.28.4")


def test_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kubeconfig .*nope: no such file"):
        make_api_client(tmp_path / "nope", None)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("clusters: [unclosed\n", "not valid YAML"),
        ("[]\n", "kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "kubeconfig"),
    ],
)
def test_bad_kubeconfig_is_one_line_config_error(tmp_path: Path, text: str, match: str) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        make_api_client(kc, None)
    assert str(kc) in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_context(kube_stub: StubAPI, tmp_path: Path) -> None:
    kc = kube_stub.kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(ConfigError, match=r"\(context prod\)") as exc:
        make_api_client(kc, "prod")
    assert "\n" not in str(exc.value)


def test_kubeconfig_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        make_api_client(tmp_path, None)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_kubeconfig_is_refused_unless_allowed(kube_stub: StubAPI, tmp_path: Path) -> None:
    fill_cluster(kube_stub)
    kc = kube_stub.kubeconfig(tmp_path / "kubeconfig", insecure=True)
    with pytest.raises(ConfigError, match="insecure-skip-tls-verify"):
        make_api_client(kc, None)
    api = make_api_client(kc, None, allow_insecure_tls=True)
    assert read_cluster(api, policy=FAST).kubeadm_version == V("v1.28.4")
