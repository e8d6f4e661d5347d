"""The lab API server's pure parts and its REST semantics, in process (no sockets):
selectors, patches, protobuf bodies, tables, spec validation, and the API with its
controller on an in-memory store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from upgrader.errors import ConfigError
from upgrader_lab.apiserver import discovery, patch, protobuf, selectors, tables
from upgrader_lab.apiserver.api import Api, Request, Response
from upgrader_lab.apiserver.controller import Controller
from upgrader_lab.apiserver.seed import initial_objects
from upgrader_lab.apiserver.spec import parse_spec
from upgrader_lab.apiserver.status import ApiError
from upgrader_lab.apiserver.store import Store

# --------------------------------------------------------------------------- selectors


def test_label_selector_grammar() -> None:
    sel = selectors.parse_label_selector("app=web, tier!=db,env in (a, b),!legacy,zone")
    assert [r.op for r in sel] == ["=", "!=", "in", "!", "exists"]
    assert selectors.matches(sel, {"app": "web", "env": "b", "zone": "z1"})
    assert not selectors.matches(sel, {"app": "web", "env": "c", "zone": "z1"})
    assert not selectors.matches(sel, {"app": "web", "env": "a", "zone": "z", "legacy": "1"})
    assert selectors.matches(selectors.parse_label_selector("x notin (1,2)"), {})
    assert selectors.matches(selectors.parse_label_selector(""), {"any": "thing"})
    with pytest.raises(ApiError) as exc:
        selectors.parse_label_selector("a=b,,c")
    assert exc.value.code == 400


def test_label_selector_objects() -> None:
    sel = selectors.from_label_selector_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        }
    )
    assert sel is not None
    assert selectors.matches(sel, {"app": "web", "tier": "fe"})
    assert not selectors.matches(sel, {"app": "web", "tier": "db"})
    assert (
        selectors.from_label_selector_object({"matchExpressions": [{"operator": "Nope"}]}) is None
    )


def test_field_selectors_as_kubectl_sends_them() -> None:
    allowed = ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")
    fs = selectors.parse_field_selector(
        "spec.nodeName=w-1,status.phase!=Succeeded,status.phase!=Failed", allowed
    )
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "w-1"}, "status": {"phase": "Running"}}
    assert selectors.field_matches(fs, pod)
    assert not selectors.field_matches(fs, dict(pod, status={"phase": "Failed"}))
    assert selectors.field_matches(selectors.parse_field_selector("metadata.name==p", allowed), pod)
    esc = selectors.parse_field_selector(r"metadata.name=a\,b", allowed)
    assert esc[0].value == "a,b"
    with pytest.raises(ApiError) as exc:
        selectors.parse_field_selector("spec.color=red", allowed)
    assert exc.value.body["message"] == "field label not supported: spec.color"
    node = {"metadata": {"name": "n"}, "spec": {}}
    assert selectors.field_value(node, "spec.unschedulable") == "false"


# --------------------------------------------------------------------------- patches


def test_strategic_merge_patch_like_kubectl_apply() -> None:
    live: dict[str, Any] = {
        "metadata": {"labels": {"app": "web", "old": "x"}, "finalizers": ["a"]},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                        {"name": "sidecar", "image": "envoy:1"},
                    ]
                }
            }
        },
    }
    p = {
        "metadata": {"labels": {"old": None}, "finalizers": ["b"]},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                    "containers": [{"name": "web", "image": "nginx:1.26"}],
                }
            }
        },
    }
    out = patch.strategic_merge_patch(live, p)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["sidecar", "web"]
    assert cs[1] == {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]}
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"  # pure
    removed = patch.strategic_merge_patch(
        live,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    assert [c["name"] for c in removed["spec"]["template"]["spec"]["containers"]] == ["web"]
    replaced = patch.strategic_merge_patch(
        {"spec": {"a": 1, "b": 2}}, {"spec": {"$patch": "replace", "c": 3}}
    )
    assert replaced == {"spec": {"c": 3}}
    kept = patch.strategic_merge_patch(
        {"spec": {"a": 1, "b": 2}}, {"spec": {"$retainKeys": ["b"], "b": 5}}
    )
    assert kept == {"spec": {"b": 5}}


def test_merge_and_json_patches() -> None:
    assert patch.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3}
    }
    doc = {"metadata": {"labels": {}}, "spec": {"taints": [{"key": "a"}]}}
    out = patch.json_patch(
        doc,
        [
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "1"},
            {"op": "add", "path": "/spec/taints/-", "value": {"key": "b"}},
            {"op": "replace", "path": "/spec/taints/0/key", "value": "c"},
            {"op": "copy", "from": "/spec/taints/1", "path": "/spec/first"},
            {"op": "move", "from": "/spec/first", "path": "/spec/moved"},
            {"op": "remove", "path": "/spec/taints/1"},
            {"op": "test", "path": "/spec/moved/key", "value": "b"},
        ],
    )
    assert out == {
        "metadata": {"labels": {"x/y": "1"}},
        "spec": {"taints": [{"key": "c"}], "moved": {"key": "b"}},
    }
    with pytest.raises(patch.PatchError):
        patch.json_patch(doc, [{"op": "test", "path": "/spec/taints/0/key", "value": "zz"}])
    with pytest.raises(patch.PatchError):
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])
    with pytest.raises(patch.PatchError):
        patch.apply_patch("application/apply-patch+yaml", doc, {})


# --------------------------------------------------------------------------- protobuf

# Bodies captured from ``kubectl.1.33 auth can-i ...`` (it sends reviews as protobuf).
SSAR_RESOURCE = bytes.fromhex(
    "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a6563"
    "74416363657373526576696577124b0a100a0012001a0022002a00320038004200122d0a2b0a0b6b756265"
    "2d73797374656d12066372656174651a0022002a04706f647332086576696374696f6e3a001a0808001200"
    "1a0020001a002200"
)
SSAR_NON_RESOURCE = bytes.fromhex(
    "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a6563"
    "74416363657373526576696577122f0a100a0012001a0022002a003200380042001211120f0a082f686561"
    "6c74687a12036765741a08080012001a0020001a002200"
)


def test_protobuf_bodies_of_real_kubectl() -> None:
    ssar = protobuf.decode_object(SSAR_RESOURCE)
    assert ssar["kind"] == "SelfSubjectAccessReview"
    assert ssar["apiVersion"] == "authorization.k8s.io/v1"
    assert ssar["spec"]["resourceAttributes"] == {
        "namespace": "kube-system",
        "verb": "create",
        "group": "",
        "version": "",
        "resource": "pods",
        "subresource": "eviction",
        "name": "",
    }
    nra = protobuf.decode_object(SSAR_NON_RESOURCE)["spec"]["nonResourceAttributes"]
    assert nra == {"path": "/healthz", "verb": "get"}
    eviction = {
        "kind": "Eviction",
        "apiVersion": "policy/v1",
        "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
        "deleteOptions": {
            "gracePeriodSeconds": 5,
            "dryRun": ["All"],
            "preconditions": {"uid": "u"},
        },
    }
    assert protobuf.decode_object(protobuf.encode_object(eviction)) == eviction
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode_object(b"{}")
    doc = protobuf.decode_message(protobuf.openapi_v2_document("v1.27.8"), "OpenAPIv2Document")
    assert doc == {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.27.8"},
        "paths": {},
        "definitions": {},
    }


# --------------------------------------------------------------------------- tables, discovery


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (400 * 86400, "400d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_age_like_kubectl(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_content_negotiation_helpers() -> None:
    kubectl_127 = (
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    )
    assert discovery.wants_aggregated(kubectl_127) == "v2beta1"
    assert discovery.wants_aggregated("application/json") is None
    get = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert discovery.wants_table(get) == "meta.k8s.io/v1"
    assert discovery.version_info("v1.33.1")["emulationMinor"] == "33"


# --------------------------------------------------------------------------- spec


def spec_data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": "v1.27.8",
        "nodes": [
            {"name": "cp-1", "role": "control-plane", "address": "127.61.0.2"},
            {"name": "w-1", "role": "worker", "address": "127.61.0.3", "cordoned": True},
            {"name": "w-2", "role": "worker", "address": "127.61.0.4"},
        ],
        "workloads": [
            {"kind": "Deployment", "name": "web", "replicas": 3, "pdb": {"maxUnavailable": 1}},
            {
                "kind": "Deployment",
                "name": "db",
                "replicas": 2,
                "pdb": [{"minAvailable": 2}, {"maxUnavailable": "50%"}],
            },
            {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            {"kind": "Pod", "name": "lonely", "node": "w-2", "empty_dir": True},
        ],
        "delays": {"kubelet_ready": 0, "pod_termination": 0},
        "faults": [
            {"node": "w-1", "match": "x", "times": 1},
            {"api": {"path_prefix": "/api/v1/nodes", "status": 503, "times": 2}},
        ],
    }
    data.update(over)
    return data


def test_spec_defaults_and_faults() -> None:
    spec = parse_spec(spec_data())
    assert spec.cluster_name == "lab" and spec.rbac is None
    assert spec.nodes[0].control_plane == "v1.27.8" and spec.nodes[1].kubelet == "v1.27.8"
    assert [p.name for p in spec.workloads[1].pdbs] == ["db", "db-2"]
    assert spec.api_faults[0].index == 1 and spec.api_faults[0].method == "*"
    assert spec.api_faults[0].matches("GET", "/api/v1/nodes/w-1")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"version": "1.27"}, "version"),
        ({"nodes": []}, "nodes"),
        ({"nodes": [{"name": "a", "role": "boss"}]}, "nodes[0].role"),
        ({"workloads": [{"kind": "Job", "name": "j"}]}, "workloads[0].kind"),
        ({"workloads": [{"kind": "Pod", "name": "p", "node": "zz"}]}, "workloads[0].node"),
        (
            {
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "d",
                        "pdb": {"minAvailable": 1, "maxUnavailable": 1},
                    }
                ]
            },
            "workloads[0].pdb",
        ),
        ({"faults": [{"api": {"status": 503, "timeout": 1}}]}, "faults[0].api"),
        ({"rbac": {"allow": [{"verbs": "get", "resources": 3}]}}, "rbac.allow[0].resources"),
    ],
)
def test_spec_errors_name_the_field(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(spec_data(**change), "spec.json")
    assert str(exc.value).startswith(f"spec.json: {where}")


# --------------------------------------------------------------------------- in-process API


class Lab:
    """The API and controller on an in-memory store; the controller runs only on demand."""

    def __init__(self, **over: Any) -> None:
        self.now = 1_700_000_000.0
        self.spec = parse_spec(spec_data(**over))
        self.store = Store(None)
        self.store.cluster = {"version": self.spec.version}
        self.store.seed(initial_objects(self.spec, self.now))
        self.controller = Controller(self.store, self.spec, clock=lambda: self.now)
        self.controller.settle()
        self.api = Api(self.store, self.spec, clock=lambda: self.now)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        ctype: str = "application/json",
        accept: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Response:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body else b"")
        return self.api.handle(
            Request(
                method, path, dict(query or {}), {"content-type": ctype, "accept": accept}, data
            )
        )

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        r = self.call(method, path, body, **kw)
        return r.code, json.loads(r.body)

    def tick(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self.controller.reconcile()

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(
            self.json("GET", "/api/v1/namespaces/default/pods", query={"labelSelector": selector})[
                1
            ]["items"]
        )


def eviction(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
    }


def test_seeded_cluster() -> None:
    lab = Lab()
    code, nodes = lab.json("GET", "/api/v1/nodes")
    assert code == 200 and nodes["kind"] == "NodeList" and nodes["metadata"]["resourceVersion"]
    w1 = next(n for n in nodes["items"] if n["metadata"]["name"] == "w-1")
    assert w1["spec"]["unschedulable"] is True
    assert {
        "key": "node.kubernetes.io/unschedulable",
        "effect": "NoSchedule",
        "timeAdded": w1["spec"]["taints"][0]["timeAdded"],
    } in w1["spec"]["taints"]
    web = lab.pods("app=web")
    assert len(web) == 3 and {p["spec"]["nodeName"] for p in web} == {"w-2"}  # only w-2 schedulable
    lonely = lab.json("GET", "/api/v1/namespaces/default/pods/lonely")[1]
    assert lonely["spec"]["volumes"][0] == {"name": "scratch", "emptyDir": {}}
    assert "ownerReferences" not in lonely["metadata"]
    code, pdb = lab.json("GET", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")
    assert pdb["status"]["disruptionsAllowed"] == 1 and pdb["status"]["expectedPods"] == 3


def test_eviction_rules_in_process() -> None:
    lab = Lab()
    a, b, _ = (p["metadata"]["name"] for p in lab.pods("app=web"))
    code, body = lab.json("POST", f"/api/v1/namespaces/default/pods/{a}/eviction", eviction(a))
    assert (code, body["status"]) == (201, "Success")
    code, body = lab.json("POST", f"/api/v1/namespaces/default/pods/{b}/eviction", eviction(b))
    assert code == 429
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }
    ]
    lab.tick(1)  # termination finishes, the ReplicaSet creates a replacement (still starting)
    assert lab.json("GET", f"/api/v1/namespaces/default/pods/{a}")[0] == 404
    assert lab.json("POST", f"/api/v1/namespaces/default/pods/{b}/eviction", eviction(b))[0] == 429
    lab.tick(1)  # the replacement is Ready: the budget allows one disruption again
    assert lab.json("POST", f"/api/v1/namespaces/default/pods/{b}/eviction", eviction(b))[0] == 201
    # db has two budgets -> 500
    db = lab.pods("app=db")[0]["metadata"]["name"]
    code, body = lab.json("POST", f"/api/v1/namespaces/default/pods/{db}/eviction", eviction(db))
    assert code == 500 and "more than one PodDisruptionBudget" in body["message"]
    assert "reason" not in body
    code, body = lab.json("POST", "/api/v1/namespaces/default/pods/nope/eviction", eviction("nope"))
    assert code == 404 and body["message"] == 'pods "nope" not found'
    # a pod without a budget is deleted; a dry run changes nothing
    dry = dict(eviction("lonely"), deleteOptions={"dryRun": ["All"]})
    assert lab.json("POST", "/api/v1/namespaces/default/pods/lonely/eviction", dry)[0] == 201
    assert lab.json("GET", "/api/v1/namespaces/default/pods/lonely")[0] == 200


def test_eviction_of_protobuf_body() -> None:
    lab = Lab()
    name = lab.pods("app=web")[0]["metadata"]["name"]
    body = protobuf.encode_object(
        {
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": name, "namespace": "default"},
        }
    )
    r = lab.call(
        "POST",
        f"/api/v1/namespaces/default/pods/{name}/eviction",
        body,
        ctype="application/vnd.kubernetes.protobuf",
    )
    assert r.code == 201


def test_statuses_and_methods() -> None:
    lab = Lab()
    assert lab.json("GET", "/api/v1/pods/x")[0] == 404  # a namespaced name needs a namespace
    log = lab.call("GET", "/api/v1/namespaces/default/pods/lonely/log")
    assert (log.code, log.content_type, log.body) == (200, "text/plain", b"")
    assert lab.call("GET", "/api/v1/namespaces/default/pods/nope/log").code == 404
    assert lab.json("GET", "/api/v1/namespaces/default/nodes")[0] == 404
    assert lab.json("GET", "/apis/apps/v2/deployments")[0] == 404
    assert lab.json("PUT", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")[0] == 405
    code, body = lab.json(
        "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "Bad_Name"}}
    )
    assert code == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    code, body = lab.json(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}},
    )
    assert code == 201 and body["metadata"]["name"].startswith("cfg-")
    code, body = lab.json(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/l",
        {"metadata": {"name": "l"}},
    )
    assert code == 404
    lab.json(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}},
    )
    code, body = lab.json(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/l",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}},
    )
    assert code == 422 and "resourceVersion" in body["message"]
    code, body = lab.json("DELETE", "/api/v1/namespaces/default")
    assert code == 403
    code, body = lab.json("DELETE", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l")
    assert code == 200 and body["status"] == "Success"
    assert body["details"] == {
        "name": "l",
        "group": "coordination.k8s.io",
        "kind": "leases",
        "uid": body["details"]["uid"],
    }


def test_no_op_update_keeps_the_resource_version() -> None:
    lab = Lab()
    _, node = lab.json("GET", "/api/v1/nodes/w-2")
    _, again = lab.json(
        "PATCH",
        "/api/v1/nodes/w-2",
        {"metadata": {"labels": {}}},
        ctype="application/strategic-merge-patch+json",
    )
    assert again["metadata"]["resourceVersion"] == node["metadata"]["resourceVersion"]


def test_list_pages_and_watch_from_a_resource_version() -> None:
    lab = Lab()
    _, page = lab.json("GET", "/api/v1/pods", query={"limit": "5"})
    assert len(page["items"]) == 5 and page["metadata"]["remainingItemCount"] > 0
    seen = [p["metadata"]["name"] for p in page["items"]]
    while page["metadata"].get("continue"):
        _, page = lab.json(
            "GET", "/api/v1/pods", query={"limit": "5", "continue": page["metadata"]["continue"]}
        )
        seen += [p["metadata"]["name"] for p in page["items"]]
    assert len(seen) == len(set(seen)) == len(lab.json("GET", "/api/v1/pods")[1]["items"])
    rv = lab.json("GET", "/api/v1/namespaces/default/pods")[1]["metadata"]["resourceVersion"]
    lab.json("DELETE", "/api/v1/namespaces/default/pods/lonely")
    resp = lab.call(
        "GET",
        "/api/v1/namespaces/default/pods",
        query={
            "watch": "true",
            "resourceVersion": rv,
            "timeoutSeconds": "0",
            "fieldSelector": "metadata.name=lonely",
        },
    )
    assert resp.stream is not None
    events = [json.loads(line) for chunk in resp.stream for line in chunk.splitlines()]
    assert [e["type"] for e in events] == ["MODIFIED"]
    assert events[0]["object"]["kind"] == "Pod"
    assert events[0]["object"]["metadata"]["deletionTimestamp"]


def test_pods_on_a_not_ready_node_stay_terminating_until_forced() -> None:
    # w-2 runs the web pods (w-1 is cordoned, cp-1 tainted); its kubelet never comes back
    nodes = [dict(n) for n in spec_data()["nodes"]]
    nodes[2]["never_ready"] = True
    lab = Lab(nodes=nodes)
    code, _ = lab.json("POST", "/_lab/v1/nodes/w-2/kubelet-restart", {"version": "v1.28.4"})
    assert code == 200
    lab.tick(1)
    node = lab.json("GET", "/api/v1/nodes/w-2")[1]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.28.4"
    assert (
        next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"
    )
    name = lab.pods("app=web")[0]["metadata"]["name"]
    code, pod = lab.json("DELETE", f"/api/v1/namespaces/default/pods/{name}")
    assert code == 200 and pod["metadata"]["deletionTimestamp"]
    lab.tick(60)
    assert lab.json("GET", f"/api/v1/namespaces/default/pods/{name}")[0] == 200  # Terminating
    lab.json("DELETE", f"/api/v1/namespaces/default/pods/{name}", query={"gracePeriodSeconds": "0"})
    assert lab.json("GET", f"/api/v1/namespaces/default/pods/{name}")[0] == 404
    lab.tick(1)  # no Ready node can take the replacement: it stays Pending, unschedulable
    pending = [p for p in lab.pods("app=web") if p["status"]["phase"] == "Pending"]
    assert len(pending) == 1
    assert pending[0]["status"]["conditions"][0]["reason"] == "Unschedulable"


def test_watch_as_table_for_kubectl_get_w() -> None:
    lab = Lab()
    rv = lab.json("GET", "/api/v1/namespaces/default/pods")[1]["metadata"]["resourceVersion"]
    name = lab.pods("app=web")[0]["metadata"]["name"]
    lab.json("DELETE", f"/api/v1/namespaces/default/pods/{name}")
    lab.json("DELETE", "/api/v1/namespaces/default/pods/lonely")
    resp = lab.call(
        "GET",
        "/api/v1/namespaces/default/pods",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        query={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "0"},
    )
    assert resp.stream is not None
    events = [json.loads(line) for chunk in resp.stream for line in chunk.splitlines()]
    assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
    assert events[0]["object"]["columnDefinitions"][0]["name"] == "Name"
    assert events[1]["object"]["columnDefinitions"] is None
    assert [e["object"]["rows"][0]["cells"][2] for e in events] == ["Terminating", "Terminating"]


def test_printed_rbac_with_the_printed_lease_allows_the_lock_and_no_other_lease() -> None:
    from upgrader.rbac import lab_rules

    with pytest.raises(ConfigError, match=r"rbac\.lease"):
        parse_spec(spec_data(rbac={"allow": [], "lease": "yes"}), "spec.json")
    lab = Lab(rbac={"allow": lab_rules(), "lease": True})
    base = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    code, lease = lab.json("GET", f"{base}/upgrader-lock")
    assert code == 200 and lease["spec"] == {}
    lease["spec"] = {"holderIdentity": "me@here/run", "leaseDurationSeconds": 60}
    code, _ = lab.json("PUT", f"{base}/upgrader-lock", lease)
    assert code == 200
    other = {"metadata": {"name": "kube-scheduler", "namespace": "kube-system"}, "spec": {}}
    code, status = lab.json("POST", base, other)
    assert code == 403, status
    code, _ = lab.json("POST", base, {**other, "metadata": {"name": "upgrader-lock"}})
    assert code == 403  # not even the lock itself: the identity has no create right at all
    assert Lab(rbac={"allow": lab_rules()}).json("GET", f"{base}/upgrader-lock")[0] == 404
