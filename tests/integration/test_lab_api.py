"""The lab API server, end to end: a real process on real HTTPS, driven by the official
python ``kubernetes`` client and by the real ``kubectl`` clients (the dispatcher and every
versioned client installed next to it)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as _config
from kubernetes import watch as _watch
from lab_api_fixture import HTTPResult, LabAPI, kubectl_binaries, small_spec, wait_for

pytestmark = pytest.mark.integration

kube_config: Any = _config
kube_watch: Any = _watch

KUBECTLS = kubectl_binaries()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabAPI]:
    server = LabAPI.start(tmp_path / "lab", small_spec())
    try:
        yield server
    finally:
        server.stop()


def api_client(lab: LabAPI) -> Any:
    return kube_config.new_client_from_config(str(lab.dir / "kubeconfig"))


def typed_api(lab: LabAPI, cls: Any) -> Any:
    """An API object of the official client (typed ``Any``: the tests read the fields)."""
    return cls(api_client(lab))


def core(lab: LabAPI) -> Any:
    return typed_api(lab, client.CoreV1Api)


def pods_on(v1: Any, node: str) -> list[Any]:
    return list(v1.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items)


def running(v1: Any, selector: str, ns: str = "default") -> list[Any]:
    return [
        p
        for p in v1.list_namespaced_pod(ns, label_selector=selector).items
        if p.status.phase == "Running"
        and not p.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def node_ready(v1: Any, name: str) -> str:
    node = v1.read_node(name)
    return str(next(c.status for c in node.status.conditions if c.type == "Ready"))


def patch_w1(lab: LabAPI, body: bytes, content_type: str) -> HTTPResult:
    """``PATCH`` of node w-1 with ``body`` as ``application/CONTENT_TYPE``: the response."""
    return lab.request(
        "PATCH",
        "/api/v1/nodes/w-1",
        raw=body,
        headers={"Content-Type": f"application/{content_type}"},
    )


def api_status(status: str, code: int, **fields: Any) -> dict[str, Any]:
    """A ``Status`` object of the API (``Success`` or ``Failure``) with ``fields`` besides."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": status,
        "code": code,
        **fields,
    }


def refusal(code: int, call: Callable[[], object]) -> Any:
    """The Status object of the official client's failed ``call``, which failed with ``code``."""
    with pytest.raises(client.ApiException) as exc:
        call()
    assert exc.value.status == code
    return json.loads(exc.value.body)


# --------------------------------------------------------------------------- TLS and auth


def test_https_with_lab_ca_and_bearer_token(lab: LabAPI) -> None:
    assert lab.url.startswith("https://127.0.0.1:")
    assert lab.request("GET", "/api/v1/nodes").status == 200
    for token in (None, "not-the-token"):
        r = lab.request("GET", "/api/v1/nodes", token=token)
        assert r.status == 401
        assert r.json() == api_status("Failure", 401, message="Unauthorized", reason="Unauthorized")
    # health and version are public (as on kubeadm clusters), a wrong token is not
    assert lab.request("GET", "/readyz", token=None).body == b"ok"
    assert lab.request("GET", "/version", token=None).status == 200
    assert lab.request("GET", "/readyz", token="wrong").status == 401
    # the certificate only verifies against the lab's own CA
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock,
        ssl.create_default_context().wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        pass
    # secrets stay private; the kubeconfig names context "lab"
    assert (lab.dir / "secrets" / "admin-token").stat().st_mode & 0o077 == 0
    kc = yaml.safe_load((lab.dir / "kubeconfig").read_text())
    assert kc["current-context"] == "lab"
    assert kc["clusters"][0]["cluster"]["server"] == lab.url
    info = json.loads((lab.dir / "apiserver.json").read_text())
    assert info["url"] == lab.url and info["pid"] == lab.proc.pid  # type: ignore[union-attr]


# --------------------------------------------------------------------------- discovery


def test_discovery_documents(lab: LabAPI) -> None:
    assert lab.get_json("/api")["versions"] == ["v1"]
    core_v1 = {r["name"]: r for r in lab.get_json("/api/v1")["resources"]}
    assert core_v1["pods/eviction"] == {
        "name": "pods/eviction",
        "singularName": "",
        "namespaced": True,
        "group": "policy",
        "version": "v1",
        "kind": "Eviction",
        "verbs": ["create"],
    }
    assert {"nodes/status", "pods/status", "configmaps", "namespaces"} <= set(core_v1)
    assert core_v1["pods"]["shortNames"] == ["po"] and core_v1["nodes"]["namespaced"] is False
    groups = {g["name"]: g for g in lab.get_json("/apis")["groups"]}
    assert {"apps", "policy", "coordination.k8s.io", "authorization.k8s.io"} <= set(groups)
    assert groups["policy"]["preferredVersion"] == {"groupVersion": "policy/v1", "version": "v1"}
    for gv, kinds in {
        "apps/v1": {"Deployment", "ReplicaSet", "DaemonSet"},
        "policy/v1": {"PodDisruptionBudget"},
        "coordination.k8s.io/v1": {"Lease"},
        "authorization.k8s.io/v1": {"SelfSubjectAccessReview"},
    }.items():
        doc = lab.get_json(f"/apis/{gv}")
        assert doc["groupVersion"] == gv
        assert kinds <= {r["kind"] for r in doc["resources"]}
    assert lab.request("GET", "/apis/policy/v1beta1").status == 404
    # aggregated discovery, as kubectl asks for it
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    r = lab.request("GET", "/apis", headers={"Accept": accept})
    assert r.headers["content-type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    agg = r.json()
    assert agg["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in agg["items"] if i["metadata"]["name"] == "apps")
    deploy = next(x for x in apps["versions"][0]["resources"] if x["resource"] == "deployments")
    assert deploy["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    r = lab.request("GET", "/api", headers={"Accept": accept})
    pods = next(
        x for x in r.json()["items"][0]["versions"][0]["resources"] if x["resource"] == "pods"
    )
    assert {
        "subresource": "eviction",
        "verbs": ["create"],
        "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
    } in pods["subresources"]
    # openapi: v3 index points at per-group documents declaring fieldValidation on PATCH
    index = lab.get_json("/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = lab.get_json(url)
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    for path in ("/healthz", "/livez", "/readyz"):
        assert lab.request("GET", path).body == b"ok"


def test_version_and_kubeadm_config_follow_the_cluster_version(lab: LabAPI) -> None:
    v1 = core(lab)
    version = typed_api(lab, client.VersionApi).get_code()
    assert (version.git_version, version.major, version.minor) == ("v1.27.8", "1", "27")
    cm = v1.read_namespaced_config_map("kubeadm-config", "kube-system")
    cfg = yaml.safe_load(cm.data["ClusterConfiguration"])
    assert cfg["kind"] == "ClusterConfiguration"
    assert cfg["kubernetesVersion"] == "v1.27.8"
    assert cfg["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    r = lab.request("POST", "/_lab/v1/cluster/version", {"version": "v1.31.2"})
    assert r.status == 200, r.body
    assert lab.get_json("/version")["gitVersion"] == "v1.31.2"
    cfg = yaml.safe_load(
        v1.read_namespaced_config_map("kubeadm-config", "kube-system").data["ClusterConfiguration"]
    )
    assert (cfg["kubernetesVersion"], cfg["apiVersion"]) == ("v1.31.2", "kubeadm.k8s.io/v1beta4")
    ds = typed_api(lab, client.AppsV1Api).read_namespaced_daemon_set("kube-proxy", "kube-system")
    assert ds.spec.template.spec.containers[0].image == "registry.k8s.io/kube-proxy:v1.31.2"
    bad = lab.request("POST", "/_lab/v1/cluster/version", {"version": "1.31"})
    assert bad.status == 400 and "version" in bad.json()["message"]


# --------------------------------------------------------------------------- nodes


def test_nodes_look_like_a_kubeadm_cluster(lab: LabAPI) -> None:
    v1 = core(lab)
    nodes = {n.metadata.name: n for n in v1.list_node().items}
    assert set(nodes) == {"cp-1", "w-1", "w-2", "w-3"}
    cp, w1 = nodes["cp-1"], nodes["w-1"]
    assert "node-role.kubernetes.io/control-plane" in cp.metadata.labels
    assert cp.metadata.labels["kubernetes.io/hostname"] == "cp-1"
    assert [(t.key, t.effect) for t in cp.spec.taints] == [
        ("node-role.kubernetes.io/control-plane", "NoSchedule")
    ]
    assert w1.spec.taints is None and not w1.spec.unschedulable
    info = w1.status.node_info
    assert info.kubelet_version == "v1.27.8"
    assert info.container_runtime_version == "containerd://1.7.2"
    assert info.os_image.startswith("Rocky Linux") and info.kernel_version.endswith("x86_64")
    assert {(a.type, a.address) for a in w1.status.addresses} == {
        ("InternalIP", "127.61.0.3"),
        ("Hostname", "w-1"),
    }
    assert node_ready(v1, "w-1") == "True"
    # selectors
    cps = v1.list_node(label_selector="node-role.kubernetes.io/control-plane")
    assert [n.metadata.name for n in cps.items] == ["cp-1"]
    workers = v1.list_node(label_selector="!node-role.kubernetes.io/control-plane")
    assert [n.metadata.name for n in workers.items] == ["w-1", "w-2", "w-3"]
    assert [n.metadata.name for n in v1.list_node(field_selector="metadata.name=w-2").items] == [
        "w-2"
    ]
    bad = lab.request("GET", "/api/v1/nodes?fieldSelector=spec.color%3Dred")
    assert bad.status == 400 and bad.json()["message"] == "field label not supported: spec.color"
    # mirror pods of the control plane on the CP node
    mirrors = [
        p
        for p in pods_on(v1, "cp-1")
        if "kubernetes.io/config.mirror" in (p.metadata.annotations or {})
    ]
    by_component = {p.metadata.labels["component"]: p for p in mirrors}
    assert set(by_component) == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    }
    apiserver = by_component["kube-apiserver"]
    assert apiserver.metadata.name == "kube-apiserver-cp-1"
    assert apiserver.metadata.labels["tier"] == "control-plane"
    assert apiserver.spec.containers[0].image == "registry.k8s.io/kube-apiserver:v1.27.8"
    assert apiserver.spec.node_name == "cp-1"
    # DaemonSet pods on every node, Deployment pods only on workers
    for name in nodes:
        owners = {
            (p.metadata.owner_references or [None])[0].kind
            for p in pods_on(v1, name)
            if p.metadata.owner_references
        }
        assert "DaemonSet" in owners
    assert all(p.spec.node_name != "cp-1" for p in v1.list_namespaced_pod("default").items)


def test_node_patch_flavours_put_and_status(lab: LabAPI) -> None:
    v1 = core(lab)
    node = v1.patch_node("w-1", {"spec": {"unschedulable": True}})  # strategic merge
    assert node.spec.unschedulable is True
    wait_for(
        lambda: any(
            t.key == "node.kubernetes.io/unschedulable"
            for t in v1.read_node("w-1").spec.taints or []
        ),
        what="taint",
    )
    assert [
        n.metadata.name for n in v1.list_node(field_selector="spec.unschedulable=true").items
    ] == ["w-1"]
    r = patch_w1(lab, b'{"spec":{"unschedulable":null}}', "merge-patch+json")
    assert r.status == 200 and "unschedulable" not in r.json()["spec"]
    wait_for(lambda: not v1.read_node("w-1").spec.taints, what="taint removed")
    ops = [{"op": "add", "path": "/metadata/labels/tier", "value": "gold"}]
    node = v1.patch_node("w-1", ops)  # a list body goes as application/json-patch+json
    assert node.metadata.labels["tier"] == "gold"
    r = patch_w1(lab, b'{"spec":{}}', "apply-patch+yaml")
    assert r.status == 415
    r = patch_w1(lab, b'[{"op":"test","path":"/metadata/name","value":"nope"}]', "json-patch+json")
    assert r.status == 422
    # PUT with a stale resourceVersion conflicts; status writes through the main resource
    # are ignored, through /status they land
    current = v1.read_node("w-1")
    stale = current.metadata.resource_version
    current.metadata.labels["x"] = "1"
    v1.replace_node("w-1", current)
    current.metadata.resource_version = stale
    assert refusal(409, lambda: v1.replace_node("w-1", current))["reason"] == "Conflict"
    patched = v1.patch_node("w-1", {"status": {"nodeInfo": {"kubeletVersion": "v9.9.9"}}})
    assert patched.status.node_info.kubelet_version == "v1.27.8"
    patched = v1.patch_node_status("w-1", {"status": {"nodeInfo": {"kubeletVersion": "v1.27.9"}}})
    assert patched.status.node_info.kubelet_version == "v1.27.9"
    assert refusal(404, lambda: v1.read_node("nope")) == api_status(
        "Failure",
        404,
        message='nodes "nope" not found',
        reason="NotFound",
        details={"name": "nope", "kind": "nodes"},
    )


# --------------------------------------------------------------------------- eviction


def evict(v1: Any, name: str, ns: str = "default", api_version: str = "policy/v1") -> Any:
    body = client.V1Eviction(
        api_version=api_version,
        kind="Eviction",
        metadata=client.V1ObjectMeta(name=name, namespace=ns),
    )
    return v1.create_namespaced_pod_eviction(name, ns, body)


def test_eviction_follows_the_pdb_rules(lab: LabAPI) -> None:
    v1 = core(lab)
    policy = typed_api(lab, client.PolicyV1Api)
    pdb = policy.read_namespaced_pod_disruption_budget("web", "default")
    assert (
        pdb.status.current_healthy,
        pdb.status.desired_healthy,
        pdb.status.disruptions_allowed,
        pdb.status.expected_pods,
    ) == (3, 2, 1, 3)
    # success: 201, the pod terminates and the ReplicaSet replaces it on another node
    v1.patch_node("w-1", {"spec": {"unschedulable": True}})
    victim = next(p for p in pods_on(v1, "w-1") if p.metadata.labels.get("app") == "web")
    r = lab.request(
        "POST",
        f"/api/v1/namespaces/default/pods/{victim.metadata.name}/eviction",
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": victim.metadata.name, "namespace": "default"},
        },
    )
    assert r.status == 201
    assert r.json() == api_status("Success", 201)
    pdb = policy.read_namespaced_pod_disruption_budget("web", "default")
    assert pdb.status.disruptions_allowed == 0
    gone = v1.read_namespaced_pod(victim.metadata.name, "default")
    assert gone.metadata.deletion_timestamp is not None
    wait_for(
        lambda: (
            not v1.list_namespaced_pod(
                "default", field_selector=f"metadata.name={victim.metadata.name}"
            ).items
        ),
        what="pod gone",
    )
    fresh = wait_for(
        lambda: len(running(v1, "app=web")) == 3 and running(v1, "app=web"), what="replacement"
    )
    assert victim.metadata.name not in {p.metadata.name for p in fresh}
    assert all(p.spec.node_name not in ("w-1", "cp-1") for p in fresh)
    assert all(p.metadata.owner_references[0].controller for p in fresh)
    wait_for(
        lambda: (
            policy.read_namespaced_pod_disruption_budget(
                "web", "default"
            ).status.disruptions_allowed
            == 1
        ),
        what="budget back",
    )
    # a budget with nothing to spare: 429 with the DisruptionBudget cause
    policy.patch_namespaced_pod_disruption_budget("web", "default", {"spec": {"maxUnavailable": 0}})
    target = running(v1, "app=web")[0].metadata.name
    assert refusal(429, lambda: evict(v1, target)) == api_status(
        "Failure",
        429,
        message="Cannot evict pod as it would violate the pod's disruption budget.",
        reason="TooManyRequests",
        details={
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
                }
            ]
        },
    )
    # two budgets over one pod: 500, which the eviction subresource does not support
    policy.create_namespaced_pod_disruption_budget(
        "default",
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="db-extra"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=0, selector=client.V1LabelSelector(match_labels={"app": "db"})
            ),
        ),
    )
    db_pod = running(v1, "app=db")[0].metadata.name
    assert refusal(500, lambda: evict(v1, db_pod))["message"] == (
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does "
        "not support."
    )
    # a missing pod: 404; a pod without a budget goes at once (policy/v1beta1 accepted)
    refusal(404, lambda: evict(v1, "no-such-pod"))
    ds_pod = next(p for p in pods_on(v1, "w-2") if p.metadata.labels.get("k8s-app") == "kube-proxy")
    evict(v1, ds_pod.metadata.name, "kube-system", api_version="policy/v1beta1")
    bad = lab.request(
        "POST",
        f"/api/v1/namespaces/default/pods/{target}/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "x"}},
    )
    assert bad.status == 400


def test_pod_delete_grace_period_and_watch(lab: LabAPI) -> None:
    v1 = core(lab)
    pod = running(v1, "app=db")[0]
    name = pod.metadata.name
    listing = v1.list_namespaced_pod("default", field_selector=f"metadata.name={name}")
    events: list[tuple[str, Any]] = []

    def watcher() -> None:
        w = kube_watch.Watch()
        for ev in w.stream(
            v1.list_namespaced_pod,
            "default",
            field_selector=f"metadata.name={name}",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=20,
        ):
            events.append((ev["type"], ev["object"]))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    deleted = v1.delete_namespaced_pod(name, "default", grace_period_seconds=5)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 5
    t.join(30)
    assert [e[0] for e in events][-1] == "DELETED"
    assert events[0][0] == "MODIFIED" and events[0][1].metadata.deletion_timestamp
    # the ReplicaSet brings the count back with a new pod
    fresh = wait_for(
        lambda: len(running(v1, "app=db")) == 2 and running(v1, "app=db"), what="db back to 2"
    )
    assert name not in {p.metadata.name for p in fresh}
    # grace period 0 removes at once; a list without any match is empty, not an error
    other = fresh[0].metadata.name
    v1.delete_namespaced_pod(other, "default", grace_period_seconds=0)
    assert not v1.list_namespaced_pod("default", field_selector=f"metadata.name={other}").items


# --------------------------------------------------------------------------- leases, objects


def test_lease_lifecycle_with_conflicts(lab: LabAPI) -> None:
    co = typed_api(lab, client.CoordinationV1Api)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="upgrader-lock"),
        spec=client.V1LeaseSpec(holder_identity="run-1", lease_duration_seconds=60),
    )
    lease = co.create_namespaced_lease("kube-system", body)
    assert lease.metadata.resource_version and lease.metadata.uid
    exists = refusal(409, lambda: co.create_namespaced_lease("kube-system", body))
    assert exists["reason"] == "AlreadyExists"
    stale = co.read_namespaced_lease("upgrader-lock", "kube-system")
    fresh = co.read_namespaced_lease("upgrader-lock", "kube-system")
    fresh.spec.holder_identity = "run-2"
    updated = co.replace_namespaced_lease("upgrader-lock", "kube-system", fresh)
    assert int(updated.metadata.resource_version) > int(stale.metadata.resource_version)
    stale.spec.holder_identity = "run-3"
    conflict = refusal(
        409, lambda: co.replace_namespaced_lease("upgrader-lock", "kube-system", stale)
    )
    assert conflict["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "upgrader-lock": the object '
        "has been modified; please apply your changes to the latest version and try again"
    )
    assert co.read_namespaced_lease("upgrader-lock", "kube-system").spec.holder_identity == "run-2"
    co.delete_namespaced_lease("upgrader-lock", "kube-system")
    refusal(404, lambda: co.read_namespaced_lease("upgrader-lock", "kube-system"))


def test_objects_validation_and_garbage_collection(lab: LabAPI) -> None:
    apps = typed_api(lab, client.AppsV1Api)
    v1 = core(lab)
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    r = lab.request("POST", "/apis/apps/v1/namespaces/default/deployments", bad)
    assert r.status == 422
    status = r.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Deployment"
    assert status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    assert status["message"].startswith('Deployment.apps "bad" is invalid: ')
    r = lab.request(
        "POST", "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}, "data": {}}
    )
    assert r.status == 404 and r.json()["message"] == 'namespaces "nowhere" not found'
    dep = apps.create_namespaced_deployment(
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "api:1"}]},
                },
            },
        },
    )
    assert dep.metadata.generation == 1
    wait_for(lambda: len(running(v1, "app=api")) == 2, what="api pods")
    rs = apps.list_namespaced_replica_set("default", label_selector="app=api").items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].kind == "Deployment"
    pods = running(v1, "app=api")
    assert all(p.metadata.owner_references[0].name == rs[0].metadata.name for p in pods)
    assert all(
        p.metadata.labels["pod-template-hash"] == rs[0].metadata.labels["pod-template-hash"]
        for p in pods
    )
    scaled = apps.patch_namespaced_deployment("api", "default", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2
    wait_for(lambda: len(running(v1, "app=api")) == 3, what="scaled up")
    wait_for(
        lambda: apps.read_namespaced_deployment("api", "default").status.ready_replicas == 3,
        what="deployment status",
    )
    apps.delete_namespaced_deployment("api", "default")
    wait_for(
        lambda: (
            not v1.list_namespaced_pod("default", label_selector="app=api").items
            and not apps.list_namespaced_replica_set("default", label_selector="app=api").items
        ),
        what="garbage collection",
    )


def test_tables_for_kubectl_get(lab: LabAPI) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = lab.request("GET", "/api/v1/nodes", headers={"Accept": accept}).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Status", "Roles", "Age", "Version"]
    rows = {r["cells"][0]: r for r in table["rows"]}
    assert rows["cp-1"]["cells"][1:3] == ["Ready", "control-plane"]
    assert rows["w-1"]["cells"][2] == "<none>" and rows["w-1"]["cells"][4] == "v1.27.8"
    assert rows["w-1"]["object"]["kind"] == "PartialObjectMetadata"
    table = lab.request("GET", "/api/v1/namespaces/default/pods", headers={"Accept": accept}).json()
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert {tuple(r["cells"][1:4]) for r in table["rows"]} == {("1/1", "Running", "0")}


# --------------------------------------------------------------------------- persistence, faults


def test_restart_keeps_every_change(lab: LabAPI) -> None:
    v1 = core(lab)
    v1.patch_node("w-2", {"spec": {"unschedulable": True}})
    v1.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="keep-me"), data={"k": "v"})
    )
    lab.request("POST", "/_lab/v1/nodes/w-3/kubelet-restart", {"version": "v1.27.9"})
    before = lab.state()
    pods_before = {p["metadata"]["uid"] for p in before["objects"]["pods"]}
    url = lab.url
    lab.restart()
    assert lab.url == url  # the previous port is reused, so kubeconfigs stay valid
    v1 = core(lab)
    assert v1.read_node("w-2").spec.unschedulable is True
    assert v1.read_namespaced_config_map("keep-me", "default").data == {"k": "v"}
    # a deadline set before the restart still fires after it
    wait_for(lambda: node_ready(v1, "w-3") == "True", what="w-3 Ready after restart")
    assert v1.read_node("w-3").status.node_info.kubelet_version == "v1.27.9"
    after = lab.state()
    assert pods_before == {p["metadata"]["uid"] for p in after["objects"]["pods"]}
    assert after["rv"] >= before["rv"]
    cm = v1.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after-restart"))
    )
    assert int(cm.metadata.resource_version) > before["rv"]
    state_file = json.loads((lab.dir / "api-state.json").read_text())
    assert "after-restart" in {c["metadata"]["name"] for c in state_file["objects"]["configmaps"]}


def test_api_fault_status_for_n_requests_then_success(tmp_path: Path) -> None:
    spec = small_spec(
        faults=[
            {"node": "w-1", "match": "kubeadm upgrade node", "times": 1, "exit": 1},
            {"api": {"method": "GET", "path_prefix": "/api/v1/nodes", "status": 503, "times": 3}},
        ]
    )
    lab = LabAPI.start(tmp_path / "lab", spec)
    try:
        v1 = core(lab)
        assert v1.list_namespaced_pod("default").items  # other paths are not affected
        for _ in range(2):
            assert refusal(503, lambda: v1.list_node())["reason"] == "ServiceUnavailable"
        lab.restart()  # the count survives a restart
        r = lab.request("GET", "/api/v1/nodes/w-1")
        assert r.status == 503
        assert len(core(lab).list_node().items) == 4
        assert lab.state()["faults"] == {"1": 3}
    finally:
        lab.stop()


def test_api_fault_timeout_holds_the_request(tmp_path: Path) -> None:
    spec = small_spec(
        faults=[
            {
                "api": {
                    "method": "*",
                    "path_prefix": "/api/v1/namespaces/default/pods",
                    "timeout": 30,
                    "times": 1,
                }
            },
        ]
    )
    lab = LabAPI.start(tmp_path / "lab", spec)
    try:
        with pytest.raises((TimeoutError, socket.timeout)):
            lab.request("GET", "/api/v1/namespaces/default/pods", timeout=0.5)
        # the held request blocks nobody else, and the next matching one is answered
        assert lab.request("GET", "/api/v1/nodes").status == 200
        assert lab.request("GET", "/api/v1/namespaces/default/pods").status == 200
    finally:
        lab.stop()


# --------------------------------------------------------------------------- RBAC


def test_rbac_rules_answer_access_reviews_and_refuse_requests(tmp_path: Path) -> None:
    spec = small_spec(
        rbac={
            "allow": [
                {"verbs": ["get", "list", "watch"], "group": "", "resources": ["nodes", "pods"]},
                {"verbs": ["create"], "group": "", "resources": ["pods/eviction"]},
            ]
        }
    )
    lab = LabAPI.start(tmp_path / "lab", spec)
    try:
        az = typed_api(lab, client.AuthorizationV1Api)

        def can(verb: str, resource: str, sub: str = "") -> bool:
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        verb=verb, resource=resource, subresource=sub or None
                    )
                )
            )
            return bool(az.create_self_subject_access_review(review).status.allowed)

        assert can("list", "nodes") and can("create", "pods", "eviction")
        assert not can("patch", "nodes") and not can("update", "leases")
        r = patch_w1(lab, b'{"spec":{"unschedulable":true}}', "strategic-merge-patch+json")
        assert r.status == 403
        assert r.json()["message"] == (
            'nodes "w-1" is forbidden: User "lab-admin" cannot patch resource "nodes" in API '
            'group "" at the cluster scope'
        )
        assert lab.request("GET", "/apis/apps/v1/deployments").status == 403
        assert lab.request("GET", "/api/v1/nodes").status == 200
        for name in ("1.27", "1.33"):  # 1.33 sends the review as protobuf
            if name not in KUBECTLS:
                continue
            no = lab.kubectl("auth", "can-i", "patch", "nodes", binary=KUBECTLS[name])
            assert (no.returncode, no.stdout.strip()) == (1, "no"), no.stderr
            yes = lab.kubectl(
                "auth", "can-i", "create", "pods", "--subresource=eviction", binary=KUBECTLS[name]
            )
            assert (yes.returncode, yes.stdout.strip()) == (0, "yes"), yes.stderr
    finally:
        lab.stop()


# --------------------------------------------------------------------------- admin: kubelets


def test_kubelet_restart_control_plane_and_never_ready(tmp_path: Path) -> None:
    spec = small_spec()
    spec["nodes"][2]["never_ready"] = True  # w-2
    lab = LabAPI.start(tmp_path / "lab", spec)
    try:
        v1 = core(lab)
        r = lab.request("POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.28.4"})
        assert r.status == 200, r.body
        assert node_ready(v1, "w-1") == "False"  # at once
        wait_for(lambda: node_ready(v1, "w-1") == "True", what="w-1 Ready")
        assert v1.read_node("w-1").status.node_info.kubelet_version == "v1.28.4"
        lab.request("POST", "/_lab/v1/nodes/w-2/kubelet-restart", {"version": "v1.28.4"})
        wait_for(lambda: "node-ready/w-2" not in lab.state()["timers"], what="w-2 timer")
        w2 = v1.read_node("w-2")
        assert node_ready(v1, "w-2") == "False"
        assert "node.kubernetes.io/not-ready" in {t.key for t in w2.spec.taints or []} or (
            wait_for(
                lambda: any(
                    t.key == "node.kubernetes.io/not-ready"
                    for t in v1.read_node("w-2").spec.taints or []
                ),
                what="taint",
            )
        )
        r = lab.request("POST", "/_lab/v1/nodes/cp-1/control-plane", {"version": "v1.28.4"})
        assert r.status == 200, r.body

        def cp_images() -> dict[str, str]:
            return {
                p.metadata.labels["component"]: p.spec.containers[0].image
                for p in v1.list_namespaced_pod(
                    "kube-system", label_selector="tier=control-plane"
                ).items
            }

        images = cp_images()
        assert images["kube-apiserver"] == "registry.k8s.io/kube-apiserver:v1.28.4"
        assert images["kube-scheduler"] == "registry.k8s.io/kube-scheduler:v1.28.4"
        assert images["etcd"] == "registry.k8s.io/etcd:3.5.9-0"
        wait_for(
            lambda: len(running(v1, "tier=control-plane", "kube-system")) == 4,
            what="control plane Ready again",
        )
        assert lab.request("POST", "/_lab/v1/nodes/w-9/kubelet-restart", {}).status == 404
        assert (
            lab.request("POST", "/_lab/v1/nodes/w-1/control-plane", {"version": "v1.28.4"}).status
            == 409
        )
    finally:
        lab.stop()


# --------------------------------------------------------------------------- kubectl


def manifest() -> str:
    return """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: shop
        image: nginx:1.25
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: shop
  namespace: default
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: shop}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-config
  namespace: default
data:
  color: blue
"""


_SHOP_SCALE = "/apis/apps/v1/namespaces/default/deployments/shop/scale"


@pytest.mark.parametrize("kubectl_name", sorted(KUBECTLS) or ["missing"])
def test_real_kubectl_against_the_lab(tmp_path: Path, kubectl_name: str) -> None:
    if kubectl_name == "missing":
        pytest.fail("no kubectl on PATH: the lab must be exercised with the real clients")
    binary = KUBECTLS[kubectl_name]
    lab = LabAPI.start(tmp_path / "lab", small_spec())
    try:
        v1 = core(lab)

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            res = lab.kubectl(*args, binary=binary)
            assert res.returncode == 0, f"kubectl {' '.join(args)}: {res.stderr}{res.stdout}"
            return res

        out = kubectl("get", "nodes").stdout.splitlines()
        assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        assert out[1].split()[:3] == ["cp-1", "Ready", "control-plane"]
        assert [line.split()[0] for line in out[1:]] == ["cp-1", "w-1", "w-2", "w-3"]
        pods = json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)
        names = {p["metadata"]["name"] for p in pods["items"]}
        assert "kube-apiserver-cp-1" in names and len(names) == 4 + 4 + 3 + 2
        kubectl("cordon", "w-1")
        assert v1.read_node("w-1").spec.unschedulable is True
        ds_before = {
            p.metadata.name
            for p in pods_on(v1, "w-1")
            if p.metadata.owner_references[0].kind == "DaemonSet"
        }
        movable = {p.metadata.name for p in pods_on(v1, "w-1")} - ds_before
        assert movable, "the drain must have something to evict"
        drained = kubectl(
            "drain", "w-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"
        )
        assert "drained" in drained.stdout
        left = {p.metadata.name for p in pods_on(v1, "w-1")}
        assert left == ds_before  # DaemonSet pods stay, the rest were evicted
        wait_for(
            lambda: len(running(v1, "app=web")) == 3 and len(running(v1, "app=db")) == 2,
            what="workloads recreated elsewhere",
        )
        assert all(p.spec.node_name != "w-1" for p in running(v1, "app in (web,db)"))
        kubectl("uncordon", "w-1")
        assert not v1.read_node("w-1").spec.unschedulable
        path = lab.dir / "shop.yaml"
        path.write_text(manifest())
        applied = kubectl("apply", "-f", str(path)).stdout
        assert "deployment.apps/shop created" in applied
        assert "poddisruptionbudget.policy/shop created" in applied
        wait_for(lambda: len(running(v1, "app=shop")) == 2, what="shop pods")
        path.write_text(manifest().replace("nginx:1.25", "nginx:1.26"))
        assert "deployment.apps/shop configured" in kubectl("apply", "-f", str(path)).stdout
        wait_for(
            lambda: (
                {p.spec.containers[0].image for p in running(v1, "app=shop")} == {"nginx:1.26"}
                and len(running(v1, "app=shop")) == 2
            ),
            what="rollout",
        )
        # `kubectl scale` goes through the deployments/scale subresource (autoscaling/v1)
        scaled = kubectl("scale", "deployment/shop", "--replicas=3")
        assert "deployment.apps/shop scaled" in scaled.stdout
        wait_for(lambda: len(running(v1, "app=shop")) == 3, what="shop scaled to 3")
        scale = json.loads(kubectl("get", "--raw", _SHOP_SCALE).stdout)
        assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 3)
        assert scale["status"]["selector"] == "app=shop"
        kubectl("scale", "deployment/shop", "--replicas=1", "--current-replicas=3")
        wait_for(lambda: len(running(v1, "app=shop")) == 1, what="shop scaled to 1")
        stale = lab.kubectl(
            "scale", "deployment/shop", "--replicas=2", "--current-replicas=3", binary=binary
        )
        assert stale.returncode != 0 and "Expected replicas to be 3, was 1" in stale.stderr
        can = kubectl("auth", "can-i", "patch", "nodes")
        assert can.stdout.strip() == "yes"
        kubectl("delete", "-f", str(path))
        wait_for(
            lambda: not v1.list_namespaced_pod("default", label_selector="app=shop").items,
            what="shop deleted",
        )
    finally:
        lab.stop()


# --------------------------------------------------------------------------- scale


def test_two_hundred_nodes_and_concurrent_clients(tmp_path: Path) -> None:
    nodes = [
        {"name": f"cp-{i}", "role": "control-plane", "address": f"127.62.0.{i + 1}"}
        for i in range(1, 4)
    ]
    nodes += [
        {"name": f"w-{i}", "role": "worker", "address": f"127.62.{i // 200}.{i % 200 + 10}"}
        for i in range(1, 198)
    ]
    workloads: list[dict[str, Any]] = [
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"}
    ]
    workloads += [
        {
            "kind": "Deployment",
            "namespace": "default",
            "name": f"app{i}",
            "replicas": 10,
            "pdb": {"maxUnavailable": 1},
        }
        for i in range(10)
    ]
    lab = LabAPI.start(tmp_path / "lab", small_spec(nodes=nodes, workloads=workloads))
    try:
        v1 = core(lab)
        names = [n.metadata.name for n in v1.list_node().items]
        assert len(names) == 200
        total = len(v1.list_pod_for_all_namespaces().items)
        assert total == 200 + 3 * 4 + 100

        def work(name: str) -> int:
            c = core(lab)
            c.patch_node(name, {"spec": {"unschedulable": True}})
            count = len(pods_on(c, name))
            assert c.read_node(name).spec.unschedulable is True
            c.patch_node(name, {"spec": {"unschedulable": None}})
            return count

        with ThreadPoolExecutor(16) as ex:
            counts = list(ex.map(work, names))
        assert sum(counts) == total
        assert not [n for n in v1.list_node().items if n.spec.unschedulable]
        page = v1.list_pod_for_all_namespaces(limit=100)
        assert len(page.items) == 100 and page.metadata._continue
        seen = len(page.items)
        while page.metadata._continue:
            page = v1.list_pod_for_all_namespaces(limit=100, _continue=page.metadata._continue)
            seen += len(page.items)
        assert seen == total
    finally:
        lab.stop()


def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "lab"
    d.mkdir()
    spec = small_spec()
    spec["nodes"][1]["kubelet"] = "1.27"
    (d / "spec.json").write_text(json.dumps(spec))
    res = subprocess.run(
        [sys.executable, "-m", "upgrader_lab.apiserver", "--dir", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1
    assert "nodes[1].kubelet" in res.stderr and "Traceback" not in res.stderr
