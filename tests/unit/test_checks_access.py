"""Permission checks and the least-privilege RBAC built from the same access list."""

from __future__ import annotations

from typing import Any

import yaml

from upgrader.core.checks.access import (
    LEASE_NAME,
    Access,
    AccessResult,
    check_access,
    creates_lease,
    lab_allow_rules,
    rbac_rules,
    required_access,
)
from upgrader.core.model import Severity
from upgrader.kube.lease import LEASE_NAME as KUBE_LEASE_NAME
from upgrader.rbac import lab_rules, render_rbac, scan_resources, subject_from


def _find(accesses: tuple[Access, ...], verb: str, resource: str, sub: str = "") -> Access:
    return next(
        a for a in accesses if a.verb == verb and a.resource == resource and a.subresource == sub
    )


def test_lease_name_matches_the_lock_module() -> None:
    assert LEASE_NAME == KUBE_LEASE_NAME


def test_required_access_covers_the_run() -> None:
    acc = required_access()
    for verb in ("get", "list", "patch"):
        assert _find(acc, verb, "nodes").required
    assert _find(acc, "list", "pods").namespace == ""  # every namespace
    ev = _find(acc, "create", "pods", "eviction")
    assert ev.group == "" and ev.required
    lease = [a for a in acc if a.resource == "leases"]
    assert {a.verb for a in lease} == {"get", "create", "update"}
    assert all(a.namespace == "kube-system" for a in lease)
    cm = _find(acc, "get", "configmaps")
    assert cm.name == "kubeadm-config" and cm.namespace == "kube-system"
    assert _find(acc, "list", "poddisruptionbudgets").group == "policy"
    assert _find(acc, "get", "daemonsets").group == "apps"
    assert not any(a.verb == "delete" for a in acc)


def test_delete_pods_only_with_disable_eviction() -> None:
    acc = required_access(disable_eviction=True)
    assert _find(acc, "delete", "pods").required


def test_review_spec_shapes() -> None:
    ev = Access("create", "pods", subresource="eviction")
    assert ev.review_spec() == {
        "resourceAttributes": {
            "verb": "create",
            "group": "",
            "resource": "pods",
            "subresource": "eviction",
        }
    }
    lease = _find(required_access(), "update", "leases")
    assert lease.review_spec()["resourceAttributes"] == {
        "verb": "update",
        "group": "coordination.k8s.io",
        "resource": "leases",
        "namespace": "kube-system",
        "name": "upgrader-lock",
    }
    assert Access("get", path="/metrics").review_spec() == {
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"}
    }


def test_missing_required_is_a_blocker_naming_verb_group_resource() -> None:
    ev = Access("create", "pods", subresource="eviction", why="evict pods when draining")
    lease = Access("update", "leases", group="coordination.k8s.io", namespace="kube-system")
    ok = Access("get", "nodes")
    found = check_access(
        [
            AccessResult(ev, False, None),
            AccessResult(lease, False, "no RBAC policy matched"),
            AccessResult(ok, True),
        ]
    )
    assert [f.code for f in found] == ["PERMISSION_MISSING", "PERMISSION_MISSING"]
    assert all(f.severity == Severity.BLOCKER and f.override is None for f in found)
    assert 'create pods/eviction (group "")' in found[0].message
    assert "in every namespace" in found[0].message and "evict pods" in found[0].message
    assert 'update leases (group "coordination.k8s.io")' in found[1].message
    assert "kube-system" in found[1].message and "no RBAC policy matched" in found[1].message
    assert "upgrader rbac" in (found[0].fix or "")


def test_creating_the_lease_is_needed_only_while_it_does_not_exist() -> None:
    create = _find(required_access(), "create", "leases")
    assert creates_lease(create) and create.required
    denied = [AccessResult(create, False, "no RBAC policy matched")]
    assert check_access(denied, lease_exists=True) == []
    for unknown_or_missing in (False, None):
        (f,) = check_access(denied, lease_exists=unknown_or_missing)
        assert f.code == "PERMISSION_MISSING" and "upgrader rbac" in f.message


def test_optional_and_unknown_are_warnings() -> None:
    metrics = Access("get", path="/metrics", required=False, why="read the metric")
    found = check_access(
        [AccessResult(metrics, False), AccessResult(Access("get", "nodes"), None, "timeout")]
    )
    assert [(f.code, f.severity) for f in found] == [
        ("PERMISSION_MISSING_OPTIONAL", Severity.WARNING),
        ("PERMISSION_UNKNOWN", Severity.WARNING),
    ]
    assert "/metrics" in found[0].message and "timeout" in found[1].message


def _grants(rules: list[dict[str, Any]], a: Access) -> bool:
    """The lab's matching semantics, restated: does some rule grant ``a``?"""
    for r in rules:
        res = a.full_resource
        if a.verb not in r["verbs"] or r["group"] != a.group:
            continue
        if res not in r["resources"]:
            continue
        if r.get("namespaces") and a.namespace not in r["namespaces"]:
            continue
        if r.get("resourceNames") and a.name not in r["resourceNames"]:
            continue
        return True
    return False


def test_rbac_rules_grant_exactly_the_required_accesses() -> None:
    for disable in (False, True):
        accesses = required_access(disable_eviction=disable, scan=scan_resources())
        rules = lab_allow_rules(rbac_rules(accesses))
        for a in accesses:
            if creates_lease(a):  # never granted: `upgrader rbac` prints the Lease instead
                assert not _grants(lab_rules(disable_eviction=disable), a), a
            elif not a.path:
                assert _grants(lab_rules(disable_eviction=disable), a), a
        # nothing beyond: no wildcard, no write on anything but the lease and nodes
        verbs = {v for r in rules for v in r["verbs"]}
        assert "*" not in verbs and "deletecollection" not in verbs
        deletes = [r for r in rules if "delete" in r["verbs"]]
        assert bool(deletes) == disable
        writes = [r for r in rules if set(r["verbs"]) & {"update", "patch", "create", "delete"}]
        assert {tuple(r["resources"]) for r in writes} <= {
            ("nodes",),
            ("pods",),
            ("pods/eviction",),
            ("leases",),
        }
    narrowed = [a for a in required_access(scan=scan_resources()) if not creates_lease(a)]
    assert lab_rules() == lab_allow_rules(rbac_rules(narrowed))
    # every namespaced write the printed rules grant is limited to named objects
    for r in lab_rules():
        if r.get("namespaces") and set(r["verbs"]) & {"create", "update", "patch", "delete"}:
            assert r.get("resourceNames"), r


def test_create_rules_carry_no_resource_names() -> None:
    for r in rbac_rules(required_access()):
        if "create" in r.verbs:
            assert r.resource_names == ()


def test_render_rbac_documents() -> None:
    text = render_rbac(subject_from(serviceaccount="kube-system/upgrader"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Lease",
    ]
    assert docs[4]["metadata"] == {
        "name": "upgrader-lock",
        "namespace": "kube-system",
        "labels": {"app.kubernetes.io/name": "upgrader"},
    }
    assert docs[4]["spec"] == {}  # kubectl apply leaves a held Lease's holder alone
    role = docs[2]
    assert {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["upgrader-lock"],
        "verbs": ["get", "update"],
    } in role["rules"]
    assert not [r for r in role["rules"] if "create" in r["verbs"]]
    assert role["metadata"]["namespace"] == "kube-system"
    assert {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["kubeadm-config", "kubelet-config"],
        "verbs": ["get"],
    } in role["rules"]
    assert docs[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "upgrader", "namespace": "kube-system"}
    ]
    assert docs[1]["roleRef"]["name"] == "upgrader" and docs[3]["roleRef"]["kind"] == "Role"
    cluster_rules = docs[0]["rules"]
    assert {"nonResourceURLs": ["/metrics"], "verbs": ["get"]} in cluster_rules
    user = [d for d in yaml.safe_load_all(render_rbac(subject_from(user="ops@example.com"))) if d]
    assert user[1]["subjects"][0] == {
        "kind": "User",
        "apiGroup": "rbac.authorization.k8s.io",
        "name": "ops@example.com",
    }


def test_subject_errors() -> None:
    import pytest

    from upgrader.errors import ConfigError

    with pytest.raises(ConfigError, match="at most one"):
        subject_from(user="a", group="b")
    with pytest.raises(ConfigError, match="--serviceaccount"):
        subject_from(serviceaccount="no-slash")
    with pytest.raises(ConfigError, match="--serviceaccount"):
        subject_from(serviceaccount="Bad/Name")
    assert subject_from().describe() == "User upgrader"


def test_node_patch_policy_document() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "rbac" / "node-patch-policy.yaml"
    policy, binding = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert policy["kind"] == "ValidatingAdmissionPolicy"
    assert binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["nodes"] and rule["operations"] == ["UPDATE"]
    checked = " ".join(v["expression"] for v in policy["spec"]["validations"])
    for field in ("labels", "annotations", "finalizers", "ownerReferences", "taints", "podCIDR",
                  "providerID"):  # fmt: skip
        assert f"object.metadata.{field}" in checked or f"object.spec.{field}" in checked
    assert "unschedulable" not in checked  # the one field the identity may change
