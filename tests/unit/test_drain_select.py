"""Drain pod selection (kubectl drain's filters), PDB matching and the blocked report, on
pod dicts shaped like the API's JSON."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from upgrader.core.drain import (
    DAEMONSET_FATAL,
    DAEMONSET_WARNING,
    LOCAL_STORAGE_FATAL,
    LOCAL_STORAGE_WARNING,
    UNMANAGED_FATAL,
    UNMANAGED_WARNING,
    blocked_report,
    classify_pods,
    pdbs_for_pod,
    selector_matches,
)


def pod(
    name: str,
    ns: str = "default",
    *,
    owner: str | None = "ReplicaSet",
    owner_name: str | None = None,
    labels: dict[str, str] | None = None,
    empty_dir: bool = False,
    mirror: bool = False,
    phase: str = "Running",
    deletion: str | None = None,
    node: str = "w-1",
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{ns}-{name}",
        "resourceVersion": "1234",
        "creationTimestamp": "2024-05-01T10:00:00Z",
        "labels": labels or {},
    }
    if owner:
        md["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner,
                "name": owner_name or name.rsplit("-", 1)[0],
                "uid": "owner-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if mirror:
        md["annotations"] = {
            "kubernetes.io/config.hash": "abc",
            "kubernetes.io/config.mirror": "abc",
            "kubernetes.io/config.source": "file",
        }
        md["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node, "uid": "n", "controller": True}
        ]
    if deletion:
        md["deletionTimestamp"] = deletion
        md["deletionGracePeriodSeconds"] = 30
    volumes: list[dict[str, Any]] = [
        {"name": "kube-api-access-x", "projected": {"sources": [], "defaultMode": 420}}
    ]
    if empty_dir:
        volumes.append({"name": "scratch", "emptyDir": {}})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "nginx:1.25"}],
            "volumes": volumes,
        },
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pdb(
    name: str,
    ns: str = "default",
    selector: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = dict(spec)
    if selector is not None:
        s["selector"] = selector
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": s,
        "status": {
            "currentHealthy": 3,
            "desiredHealthy": 3,
            "disruptionsAllowed": 0,
            "expectedPods": 3,
        },
    }


WEB = pod("web-7d4b9-abcde", labels={"app": "web"})
PROXY = pod("kube-proxy-x1", "kube-system", owner="DaemonSet", owner_name="kube-proxy")
APISERVER = pod("kube-apiserver-w-1", "kube-system", mirror=True)
LONELY = pod("lonely", owner=None, empty_dir=True)
BARE = pod("bare", owner=None)
CACHE = pod("cache-5f-xyz", empty_dir=True)
JOB_DONE = pod("job-abc", owner=None, empty_dir=True, phase="Succeeded")


def keys(ds: Any) -> list[str]:
    return [d.key for d in ds]


def test_default_flags_refuse_before_anything_naming_every_pod() -> None:
    sel = classify_pods([WEB, PROXY, APISERVER, LONELY, BARE, CACHE, JOB_DONE], node="w-1")
    assert not sel.ok
    assert keys(sel.to_evict) == ["default/web-7d4b9-abcde", "default/job-abc"]
    assert keys(sel.skipped) == ["kube-system/kube-proxy-x1", "kube-system/kube-apiserver-w-1"]
    assert keys(sel.refused) == ["default/lonely", "default/bare", "default/cache-5f-xyz"]
    assert sel.errors() == [
        f"{LOCAL_STORAGE_FATAL}: default/lonely, default/cache-5f-xyz",
        f"{UNMANAGED_FATAL}: default/lonely, default/bare",
    ]
    msg = sel.error_message()
    assert msg.startswith("cannot drain node w-1: ")
    for k in ("default/lonely", "default/bare", "default/cache-5f-xyz"):
        assert k in msg
    assert "\n" not in msg


def test_kubectl_messages_are_exact() -> None:
    assert LOCAL_STORAGE_FATAL == (
        "cannot delete Pods with local storage (use --delete-emptydir-data to override)"
    )
    assert UNMANAGED_FATAL == (
        "cannot delete Pods that declare no controller (use --force to override)"
    )
    assert DAEMONSET_FATAL == (
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
    )


def test_flags_allow_emptydir_and_unmanaged_with_warnings() -> None:
    sel = classify_pods(
        [WEB, LONELY, BARE, CACHE], node="w-1", delete_emptydir_data=True, force=True
    )
    assert sel.ok and sel.error_message() == ""
    assert keys(sel.to_evict) == [
        "default/web-7d4b9-abcde",
        "default/lonely",
        "default/bare",
        "default/cache-5f-xyz",
    ]
    by = {d.key: d.reason for d in sel.to_evict}
    assert by["default/cache-5f-xyz"] == LOCAL_STORAGE_WARNING
    assert by["default/bare"] == UNMANAGED_WARNING
    assert by["default/web-7d4b9-abcde"] is None
    assert f"{UNMANAGED_WARNING}: default/lonely, default/bare" in sel.warnings()


def test_emptydir_flag_alone_still_refuses_unmanaged() -> None:
    sel = classify_pods([LONELY], node="w-1", delete_emptydir_data=True)
    assert sel.errors() == [f"{UNMANAGED_FATAL}: default/lonely"]


def test_daemonset_pods_refused_without_ignore() -> None:
    sel = classify_pods([PROXY, WEB], node="w-1", ignore_daemonsets=False)
    assert sel.errors() == [f"{DAEMONSET_FATAL}: kube-system/kube-proxy-x1"]
    sel2 = classify_pods([PROXY], node="w-1")
    assert sel2.skipped[0].reason == DAEMONSET_WARNING
    assert sel2.warnings() == [f"{DAEMONSET_WARNING}: kube-system/kube-proxy-x1"]


def test_orphaned_daemonset_pod_needs_force() -> None:
    missing = {("kube-system", "kube-proxy")}
    sel = classify_pods([PROXY], node="w-1", missing_daemonsets=missing)
    assert sel.errors() == [
        'cannot delete daemonsets.apps "kube-proxy" not found: kube-system/kube-proxy-x1'
    ]
    sel2 = classify_pods([PROXY], node="w-1", missing_daemonsets=missing, force=True)
    assert keys(sel2.to_evict) == ["kube-system/kube-proxy-x1"]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_are_deleted_without_checks(phase: str) -> None:
    finished = [
        pod("a", owner=None, empty_dir=True, phase=phase),
        pod("ds-1", owner="DaemonSet", owner_name="ds", phase=phase),
    ]
    sel = classify_pods(finished, node="w-1", ignore_daemonsets=False)
    assert sel.ok
    assert keys(sel.to_evict) == ["default/a", "default/ds-1"]


def test_mirror_pods_are_skipped_even_when_finished() -> None:
    m = pod("etcd-w-1", "kube-system", mirror=True, phase="Failed", empty_dir=True)
    sel = classify_pods([m], node="w-1")
    assert keys(sel.skipped) == ["kube-system/etcd-w-1"]
    assert sel.warnings() == []


def test_non_controller_owner_reference_counts_as_unmanaged() -> None:
    p = pod("x", owner="ReplicaSet")
    p["metadata"]["ownerReferences"][0]["controller"] = False
    assert classify_pods([p], node="w-1").errors() == [f"{UNMANAGED_FATAL}: default/x"]


def test_skip_wait_for_delete_timeout() -> None:
    old = pod("old", owner=None, deletion="2024-05-01T10:00:00Z")
    recent = pod("recent", deletion="2024-05-01T10:09:50Z")
    now = datetime(2024, 5, 1, 10, 10, 0, tzinfo=UTC)
    sel = classify_pods([old, recent], node="w-1", skip_wait_for_delete_timeout=60, now=now)
    assert keys(sel.skipped) == ["default/old"]
    assert keys(sel.to_evict) == ["default/recent"]
    # disabled by default: the old unmanaged pod is refused
    assert keys(classify_pods([old], node="w-1").refused) == ["default/old"]


def test_input_is_not_mutated() -> None:
    pods = [WEB, PROXY, LONELY]
    before = copy.deepcopy(pods)
    classify_pods(pods, node="w-1", force=True, delete_emptydir_data=True)
    assert pods == before


# --------------------------------------------------------------------------- PDBs


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {"app": "web"}, False),
        ({}, {}, True),
        ({}, {"app": "web"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "web"]}]},
            {"app": "web"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]},
            {"app": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            {"app": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
            },
            {"app": "web"},
            False,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "Bogus", "values": ["x"]}]},
            {"app": "x"},
            False,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
            {"app": "x"},
            False,
        ),
    ],
)
def test_selector_matches(
    selector: dict[str, Any] | None, labels: dict[str, str], matches: bool
) -> None:
    assert selector_matches(selector, labels) is matches


def test_pdbs_for_pod_same_namespace_only() -> None:
    pdbs = [
        pdb("web", selector={"matchLabels": {"app": "web"}}, maxUnavailable=1),
        pdb("web-other-ns", "prod", selector={"matchLabels": {"app": "web"}}, maxUnavailable=1),
        pdb("all", selector={}, minAvailable="50%"),
        pdb("nil", minAvailable=1),
        pdb("db", selector={"matchLabels": {"app": "db"}}, minAvailable=2),
    ]
    names = [p["metadata"]["name"] for p in pdbs_for_pod(WEB, pdbs)]
    assert names == ["web", "all"]


def test_blocked_report_names_pod_and_pdbs() -> None:
    web_pdb = pdb("web", selector={"matchLabels": {"app": "web"}}, maxUnavailable=1)
    db = pod("db-0", labels={"app": "db", "tier": "data"})
    db_pdbs = [
        pdb("db-a", selector={"matchLabels": {"app": "db"}}, minAvailable=2),
        pdb(
            "db-b",
            selector={"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            minAvailable=1,
        ),
    ]
    gone_slow = pod("slow", labels={"app": "slow"}, deletion="2024-05-01T10:00:00Z")
    free = pod("free", labels={"app": "free"})
    lines = blocked_report(
        [WEB, db, gone_slow, free],
        [web_pdb, *db_pdbs],
        last_errors={
            "default/web-7d4b9-abcde": "Cannot evict pod as it would violate the pod's "
            "disruption budget."
        },
    )
    assert lines[0] == (
        "default/web-7d4b9-abcde: blocked by PodDisruptionBudget default/web "
        "(maxUnavailable 1; 3 healthy, 3 needed, 0 disruptions allowed); last eviction "
        "error: Cannot evict pod as it would violate the pod's disruption budget."
    )
    assert lines[1].startswith("default/db-0: matched by several PodDisruptionBudgets")
    assert "default/db-a" in lines[1] and "default/db-b" in lines[1]
    assert lines[2] == (
        "default/slow: still terminating (deletion requested at 2024-05-01T10:00:00Z, "
        "grace period 30s)"
    )
    assert lines[3] == "default/free: no PodDisruptionBudget matches it"
