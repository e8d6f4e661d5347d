"""Drainability findings per node to be drained (PDBs, emptyDir, unmanaged, orphans)."""

from __future__ import annotations

from typing import Any

from upgrader.core.checks.drainability import DrainFlags, check_drainability, pdb_never_allows
from upgrader.core.model import Severity

Json = dict[str, Any]


def pod(
    name: str,
    node: str,
    *,
    app: str | None = None,
    owner: str | None = "ReplicaSet",
    empty_dir: bool = False,
    phase: str = "Running",
    ns: str = "default",
) -> Json:
    md: Json = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": {}}
    if app:
        md["labels"]["app"] = app
    if owner:
        md["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner, "name": f"{app or name}-x", "controller": True}
        ]
    spec: Json = {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}
    if empty_dir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {"metadata": md, "spec": spec, "status": {"phase": phase}}


def pdb(
    name: str, app: str, *, allowed: int | None = None, expected: int | None = None, **spec: Any
) -> Json:
    status: Json = {}
    if allowed is not None:
        status["disruptionsAllowed"] = allowed
    if expected is not None:
        status["expectedPods"] = expected
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
        "status": status,
    }


def codes(found: list[Any]) -> list[tuple[str, str | None, Severity]]:
    return [(f.code, f.node, f.severity) for f in found]


def test_pdb_never_allows() -> None:
    assert pdb_never_allows(pdb("a", "a", maxUnavailable=0), 3) is not None
    assert pdb_never_allows(pdb("a", "a", maxUnavailable="0%"), 3) is not None
    assert pdb_never_allows(pdb("a", "a", maxUnavailable=1), 3) is None
    assert pdb_never_allows(pdb("a", "a", maxUnavailable="10%"), 3) is None  # rounds up to 1
    assert pdb_never_allows(pdb("a", "a", minAvailable=2, expected=2), 0) is not None
    assert pdb_never_allows(pdb("a", "a", minAvailable=2), 2) is not None  # counted pods
    assert pdb_never_allows(pdb("a", "a", minAvailable=1, expected=2), 2) is None
    assert pdb_never_allows(pdb("a", "a", minAvailable="100%"), 3) is not None
    assert pdb_never_allows(pdb("a", "a", minAvailable="50%"), 3) is None
    assert pdb_never_allows(pdb("a", "a", minAvailable=1), 0) is None  # covers nothing


def test_a_healthy_cluster_drains() -> None:
    pods = [
        pod("web-1", "w1", app="web"),
        pod("web-2", "w2", app="web"),
        pod("ds", "w1", owner="DaemonSet"),
    ]
    pdbs = [pdb("web", "web", maxUnavailable=1, allowed=1, expected=2)]
    assert check_drainability(pods, pdbs, ["w1", "w2"]) == []


def test_blocking_budgets_name_pod_and_pdb() -> None:
    pods = [
        pod("db-1", "w1", app="db"),
        pod("db-2", "w2", app="db"),
        pod("zero-1", "w1", app="zero"),
    ]
    pdbs = [
        pdb("db", "db", minAvailable=2, allowed=0, expected=2),
        pdb("zero", "zero", maxUnavailable=0, allowed=0, expected=1),
    ]
    found = check_drainability(pods, pdbs, ["w1"])
    assert codes(found) == [
        ("DRAIN_PDB_BLOCKS", "w1", Severity.BLOCKER),
        ("DRAIN_PDB_BLOCKS", "w1", Severity.BLOCKER),
    ]
    assert (
        "PodDisruptionBudget default/db" in found[0].message and "default/db-1" in found[0].message
    )
    assert "default/db-2" not in found[0].message  # on another node
    assert found[0].override == "--disable-eviction"
    passed = check_drainability(pods, pdbs, ["w1"], DrainFlags(disable_eviction=True))
    assert {f.severity for f in passed} == {Severity.WARNING}
    assert all("(passed by --disable-eviction)" in f.message for f in passed)


def test_no_disruption_now_is_a_warning() -> None:
    pods = [pod("web-1", "w1", app="web"), pod("web-2", "w2", app="web", phase="Pending")]
    pdbs = [pdb("web", "web", maxUnavailable=1, allowed=0, expected=2)]
    found = check_drainability(pods, pdbs, ["w1", "w2"])
    assert codes(found) == [("DRAIN_PDB_NO_DISRUPTION_NOW", "w1", Severity.WARNING)]
    assert check_drainability(pods, pdbs, ["w1"], DrainFlags(disable_eviction=True)) == []


def test_several_budgets_on_one_pod() -> None:
    pods = [pod("api-1", "w1", app="api")]
    pdbs = [
        pdb("api", "api", maxUnavailable=1, allowed=1),
        pdb("api-2", "api", minAvailable=0, allowed=1),
    ]
    found = check_drainability(pods, pdbs, ["w1"])
    assert codes(found) == [("DRAIN_MULTIPLE_PDBS", "w1", Severity.BLOCKER)]
    assert "default/api, default/api-2" in found[0].message and "default/api-1" in found[0].message


def test_emptydir_and_unmanaged_pods() -> None:
    pods = [
        pod("lonely", "w1", owner=None, empty_dir=True),
        pod("cache-1", "w1", app="cache", empty_dir=True),
        pod("done", "w1", owner=None, phase="Succeeded"),
    ]
    found = check_drainability(pods, [], ["w1"])
    assert codes(found) == [
        ("DRAIN_EMPTYDIR", "w1", Severity.BLOCKER),
        ("DRAIN_UNMANAGED_POD", "w1", Severity.BLOCKER),
    ]
    assert "default/lonely, default/cache-1" in found[0].message
    assert found[0].override == "--delete-emptydir-data" and found[1].override == "--force"
    assert "default/done" not in found[1].message  # finished pods go without a controller
    flags = DrainFlags(delete_emptydir_data=True, force=True)
    assert {f.severity for f in check_drainability(pods, [], ["w1"], flags)} == {Severity.WARNING}


def test_orphaned_daemonset_pod() -> None:
    p = pod("agent-x", "w1", owner="DaemonSet", app="agent")
    found = check_drainability([p], [], ["w1"], missing_daemonsets={("default", "agent-x")})
    assert codes(found) == [("DRAIN_ORPHANED_DAEMONSET_POD", "w1", Severity.BLOCKER)]


def test_only_drained_nodes_and_mirror_pods_are_skipped() -> None:
    mirror = pod("kube-apiserver-cp1", "cp1", owner="Node", ns="kube-system")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    pods = [mirror, pod("lonely", "w2", owner=None)]
    assert check_drainability(pods, [], ["cp1"]) == []
    assert check_drainability(pods, [], ["w1"]) == []
    assert [f.node for f in check_drainability(pods, [], ["w2", "w2"])] == ["w2"]
