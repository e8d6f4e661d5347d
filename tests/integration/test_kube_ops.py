"""Node, drain, lease and retry operations against the lab's real HTTPS API server.

Each test starts its own ``python -m upgrader_lab.apiserver`` on a spec written for it
(so faults, cordons and evictions never leak between tests) and talks to it through the
official client built from the kubeconfig the server writes (TLS verified against the
lab CA, bearer token)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, CoreV1Api
from lab_api_fixture import LabAPI, wait_for

from upgrader.errors import ConfigError, LockHeld, StepFailed
from upgrader.kube import lease
from upgrader.kube.client import make_api_client
from upgrader.kube.drain import DrainRefused, DrainTimeout, drain, list_node_pods
from upgrader.kube.nodes import (
    cordon,
    get_node,
    is_ready,
    is_unschedulable,
    node_kubelet_version,
    uncordon,
    wait_control_plane,
    wait_node_ready,
)
from upgrader.kube.retry import ApiError, RetryPolicy, request_json
from upgrader.kube.watching import ChangeFeed

pytestmark = pytest.mark.integration


class Lab:
    """The lab's API server (``lab_api_fixture.LabAPI``) and an official client on the
    kubeconfig it wrote."""

    def __init__(self, server: LabAPI) -> None:
        self.server = server
        self.dir = server.dir
        self.url = server.url
        self.api: ApiClient = make_api_client(server.dir / "kubeconfig", None)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call a ``/_lab/v1`` admin endpoint (what the simulated node tools do)."""
        r = self.server.request(method, path, body)
        assert 200 <= r.status < 300, (path, r.status, r.body[:300])
        return r.json() if r.body else None

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        return list_node_pods(self.api, node)

    def stop(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]
        self.server.stop()


def _node(name: str, role: str = "worker", **kw: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **kw}


def _spec(
    nodes: list[dict[str, Any]], workloads: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cluster_name": "lab",
        "version": "v1.27.8",
        "nodes": nodes,
        "workloads": workloads,
        "delays": {"kubelet_ready": 0.3, "pod_termination": 0.1, "pod_startup": 0.1},
        "faults": [],
        "missing_packages": [],
        "rbac": None,
    }
    spec.update(kw)
    return spec


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Lab]]:
    labs: list[Lab] = []

    def make(spec: dict[str, Any]) -> Lab:
        lab = Lab(LabAPI.start(tmp_path / f"lab{len(labs)}", spec))
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


@pytest.fixture
def drain_lab(make_lab: Callable[[dict[str, Any]], Lab]) -> Callable[..., Lab]:
    """``drain_lab(*workloads, **spec)``: a lab of ``cp-1`` and the three :data:`WORKERS`
    running ``workloads`` (``spec``: more of the spec, as :func:`_spec` takes it)."""

    def make(*workloads: dict[str, Any], **spec: Any) -> Lab:
        return make_lab(_spec(_three_workers(), list(workloads), **spec))

    return make


# two PodDisruptionBudgets over the same pods
TWO_PDBS = [{"maxUnavailable": 1}, {"maxUnavailable": 2, "name": "multi-too"}]


def _deployment(name: str, replicas: int, grace_period: int = 0, pdb: Any = None) -> dict[str, Any]:
    """A Deployment in ``default`` (``pdb``: its PodDisruptionBudget spec, or a list)."""
    workload: dict[str, Any] = {
        "kind": "Deployment",
        "name": name,
        "replicas": replicas,
        "grace_period": grace_period,
    }
    if pdb is not None:
        workload["pdb"] = pdb
    return workload


def _one_worker_with_api_fault(**api: Any) -> dict[str, Any]:
    """cp-1 and w-1, no workloads, one API fault on GETs (``path_prefix``, ``status`` or
    ``timeout``, ``times``)."""
    fault = {"api": {"method": "GET", **api}}
    return _spec([_node("cp-1", "control-plane"), _node("w-1")], [], faults=[fault])


def keys(pods: list[dict[str, Any]]) -> set[str]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods}


def non_daemon(pods: list[dict[str, Any]]) -> set[str]:
    """Pods that a drain must remove (not mirror, not DaemonSet-managed)."""
    out = set()
    for p in pods:
        md = p["metadata"]
        if "kubernetes.io/config.mirror" in (md.get("annotations") or {}):
            continue
        if any(r.get("kind") == "DaemonSet" for r in md.get("ownerReferences") or ()):
            continue
        out.add(f"{md['namespace']}/{md['name']}")
    return out


def node_with(lab: Lab, nodes: list[str], prefix: str) -> str:
    for n in nodes:
        if any(p["metadata"]["name"].startswith(prefix) for p in lab.pods_on(n)):
            return n
    raise AssertionError(f"no node runs a {prefix}* pod")


POLL = 0.1  # "is it gone?" interval
RETRY = 0.2  # wait after a PDB said no


# --------------------------------------------------------------------------- nodes


def test_cordon_and_uncordon_say_whether_they_changed_anything(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    lab = make_lab(
        _spec([_node("cp-1", "control-plane"), _node("w-1"), _node("w-2", cordoned=True)], [])
    )
    assert cordon(lab.api, "w-1") is True
    assert is_unschedulable(get_node(lab.api, "w-1"))
    assert cordon(lab.api, "w-1") is False
    assert uncordon(lab.api, "w-1") is True
    assert not is_unschedulable(get_node(lab.api, "w-1"))
    assert uncordon(lab.api, "w-1") is False
    # a node cordoned before we came: cordon reports no change
    assert cordon(lab.api, "w-2") is False
    with pytest.raises(ApiError) as ei:
        get_node(lab.api, "w-9")
    assert ei.value.not_found
    assert "w-9" in str(ei.value)
    with pytest.raises(ConfigError):
        cordon(lab.api, "w-1,spec.unschedulable=true")


def test_wait_node_ready_after_kubelet_restart(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(
        _spec([_node("cp-1", "control-plane"), _node("w-1"), _node("w-2", never_ready=True)], [])
    )
    lab.admin("POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.28.4"})
    node = wait_node_ready(lab.api, "w-1", "v1.28.4", timeout=60, poll=0.1)
    assert node_kubelet_version(node) == "v1.28.4"

    lab.admin("POST", "/_lab/v1/nodes/w-2/kubelet-restart", {"version": "v1.28.4"})
    said: list[str] = []
    with pytest.raises(StepFailed) as ei:
        wait_node_ready(
            lab.api, "w-2", "v1.28.4", timeout=1.5, poll=0.1, on_progress=said.append,
            progress_every=0.5,
        )  # fmt: skip
    # the wait spoke while it waited: what it saw last, and the time left
    assert 1 <= len(said) <= 3, said
    assert said[0].startswith("waiting for w-2 to be Ready at kubelet v1.28.4: last seen kubelet")
    assert "Ready=" in said[0] and "s of 1.5s left" in said[0]
    msg = str(ei.value)
    assert ei.value.node == "w-2"
    assert "w-2" in msg and "v1.28.4" in msg
    assert "last seen kubelet" in msg and "Ready=" in msg
    assert "\n" not in msg


def _when_ready(lab: Lab, node: str, version: str) -> tuple[threading.Thread, list[float]]:
    """An independent watch of ``node``: the monotonic time the API first shows it Ready
    at ``version`` (started before the change, so it misses nothing)."""
    core = CoreV1Api(lab.api)
    rv = core.list_node(field_selector=f"metadata.name={node}").metadata.resource_version
    seen: list[float] = []

    def observe() -> None:
        w = watch.Watch(return_type="object")
        for ev in w.stream(
            core.list_node,
            field_selector=f"metadata.name={node}",
            resource_version=rv,
            timeout_seconds=30,
        ):
            obj = ev["object"]
            if is_ready(obj) and node_kubelet_version(obj) == version:
                seen.append(time.monotonic())
                w.stop()

    t = threading.Thread(target=observe, daemon=True)
    t.start()
    return t, seen


def test_wait_node_ready_reacts_to_the_watch_not_to_the_next_poll(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    delays = {"kubelet_ready": 2.5, "pod_termination": 0.1, "pod_startup": 0.1}
    lab = make_lab(_spec([_node("cp-1", "control-plane"), _node("w-1")], [], delays=delays))
    observer, ready_at = _when_ready(lab, "w-1", "v1.28.4")
    lab.admin("POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.28.4"})
    # polling alone reads at 0.25, 0.75, 1.75 and 3.75 s: Ready at 2.5 s would be seen
    # 1.25 s late; the node's watch wakes the wait as the API changes
    wait_node_ready(lab.api, "w-1", "v1.28.4", timeout=30, poll=30)
    returned = time.monotonic()
    observer.join(timeout=30)
    assert ready_at, "the independent watch never saw w-1 Ready"
    assert returned - ready_at[0] < 0.5, f"seen {returned - ready_at[0]:.3f}s after Ready"


def test_a_watch_the_rbac_denies_leaves_the_wait_polling(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    rules = [{"verbs": ["get", "list"], "resources": ["nodes"]}]
    lab = make_lab(_spec([_node("cp-1", "control-plane"), _node("w-1")], [], rbac={"allow": rules}))
    core = CoreV1Api(lab.api)
    with ChangeFeed(core.list_node, what="nodes", field_selector="metadata.name=w-1") as feed:
        wait_for(lambda: feed.ended is not None, timeout=10)
    assert feed.ended is not None and feed.ended.startswith("watch not allowed: 403")
    lab.admin("POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.28.4"})
    node = wait_node_ready(lab.api, "w-1", "v1.28.4", timeout=60, poll=0.1)
    assert node_kubelet_version(node) == "v1.28.4"


def test_a_change_feed_wakes_its_sleeper_at_once(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane"), _node("w-1")], []))
    core = CoreV1Api(lab.api)
    with ChangeFeed(core.list_node, what="nodes", field_selector="metadata.name=w-1") as feed:
        wait_for(lambda: feed.live, timeout=10)
        feed.sleep(0.3)  # the wake-up of the initial listing, if any, is used up
        t0 = time.monotonic()
        threading.Timer(0.5, lambda: cordon(lab.api, "w-1")).start()
        feed.sleep(20)
        woke = time.monotonic() - t0
    assert 0.4 <= woke < 3.0, woke  # the cordon's MODIFIED event, not the 20 s nap
    assert feed.events >= 1 and feed.ended is None


def test_wait_node_ready_times_out_on_wrong_version(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane"), _node("w-1")], []))
    with pytest.raises(StepFailed, match=r"last seen kubelet v1\.27\.8, Ready=True"):
        wait_node_ready(lab.api, "w-1", "v1.28.4", timeout=0.5, poll=0.1)


def test_wait_control_plane(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane"), _node("w-1")], []))
    lines = wait_control_plane(lab.api, "cp-1", "v1.27.8", timeout=30, poll=0.1)
    assert len(lines) == 3 and all("v1.27.8" in line for line in lines)
    lab.admin("POST", "/_lab/v1/nodes/cp-1/control-plane", {"version": "v1.28.4"})
    lines = wait_control_plane(lab.api, "cp-1", "v1.28.4", timeout=60, poll=0.1)
    assert all("image tag v1.28.4, Ready=True" in line for line in lines)
    with pytest.raises(StepFailed) as ei:
        wait_control_plane(lab.api, "cp-1", "v1.29.0", timeout=0.5, poll=0.1)
    msg = str(ei.value)
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"{comp}: image tag v1.28.4" in msg
    # a worker has no control plane
    with pytest.raises(StepFailed, match="no mirror pod"):
        wait_control_plane(lab.api, "w-1", "v1.28.4", timeout=0.3, poll=0.1)


# --------------------------------------------------------------------------- drain

WORKERS = ["w-1", "w-2", "w-3"]


def _three_workers(**kw: Any) -> list[dict[str, Any]]:
    return [_node("cp-1", "control-plane"), *(_node(w, **kw) for w in WORKERS)]


def test_drain_evicts_everything_it_may_and_waits_until_gone(
    drain_lab: Callable[..., Lab],
) -> None:
    lab = drain_lab(
        _deployment("web", 3, pdb={"maxUnavailable": 1}),
        _deployment("api", 2, pdb={"minAvailable": 1}),
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
    )
    node = node_with(lab, WORKERS, "web")
    before = lab.pods_on(node)
    must_go = non_daemon(before)
    assert must_go
    events: list[str] = []
    assert cordon(lab.api, node) is True
    res = drain(lab.api, node, timeout=60, on_event=events.append, poll=POLL, retry_delay=RETRY)
    assert set(res.evicted) == must_go
    assert any(k.startswith("kube-system/kube-proxy") for k in res.skipped)
    assert any("ignoring DaemonSet-managed Pods" in w for w in res.warnings)
    assert any(e.startswith("evicting pod default/web") for e in events)
    after = lab.pods_on(node)
    assert non_daemon(after) == set()
    assert is_unschedulable(get_node(lab.api, node))  # drain leaves the node cordoned
    # the Deployments were made whole again elsewhere
    wait_for(
        lambda: (
            sum(
                1
                for w in WORKERS
                for p in lab.pods_on(w)
                if p["metadata"]["name"].startswith("web")
            )
            == 3
        ),
        what="web back to 3 replicas",
    )
    # draining again: nothing left to evict
    again = drain(lab.api, node, timeout=10, poll=POLL, retry_delay=RETRY)
    assert again.evicted == ()


def test_a_drain_sees_its_pods_go_through_the_watch_not_its_poll(
    drain_lab: Callable[..., Lab],
) -> None:
    delays = {"kubelet_ready": 0.3, "pod_termination": 0.5, "pod_startup": 0.1}
    workload = {"kind": "Deployment", "name": "web", "replicas": 6, "grace_period": 0}
    lab = drain_lab(workload, delays=delays)
    node = node_with(lab, WORKERS, "web")
    must_go = non_daemon(lab.pods_on(node))
    assert cordon(lab.api, node) is True
    t0 = time.monotonic()
    # a 60 s poll: polling alone would see the pods gone a minute later
    res = drain(lab.api, node, timeout=120, poll=60, retry_delay=RETRY)
    took = time.monotonic() - t0
    assert set(res.evicted) == must_go and non_daemon(lab.pods_on(node)) == set()
    assert took < 15, f"the drain took {took:.1f}s"


def test_drain_refuses_before_evicting_anything(drain_lab: Callable[..., Lab]) -> None:
    lab = drain_lab(
        {"kind": "Deployment", "name": "web", "replicas": 6, "grace_period": 0},
        {"kind": "Pod", "name": "lonely", "node": "w-1", "empty_dir": True},
        {"kind": "Pod", "name": "bare", "node": "w-1"},
    )
    before = {p["metadata"]["uid"] for p in lab.pods_on("w-1")}
    with pytest.raises(DrainRefused) as ei:
        drain(lab.api, "w-1", timeout=30, poll=POLL, retry_delay=RETRY)
    msg = str(ei.value)
    assert msg.startswith("cannot drain node w-1: ")
    clauses = dict(
        c.rsplit(": ", 1) for c in msg.removeprefix("cannot drain node w-1: ").split("; ")
    )
    assert {k: set(v.split(", ")) for k, v in clauses.items()} == {
        "cannot delete Pods with local storage (use --delete-emptydir-data to override)": {
            "default/lonely"
        },
        "cannot delete Pods that declare no controller (use --force to override)": {
            "default/lonely",
            "default/bare",
        },
    }
    assert "\n" not in msg
    # refused before anything was evicted (uncordoning a node the run cordoned is the
    # engine's: tests/unit/test_engine.py)
    assert {p["metadata"]["uid"] for p in lab.pods_on("w-1")} == before

    # with the flags, they go (and unmanaged pods do not come back)
    cordon(lab.api, "w-1")
    res = drain(
        lab.api,
        "w-1",
        timeout=60,
        delete_emptydir_data=True,
        force=True,
        poll=POLL,
        retry_delay=RETRY,
    )
    assert {"default/lonely", "default/bare"} <= set(res.evicted)
    assert non_daemon(lab.pods_on("w-1")) == set()


def test_drain_timeout_names_pods_and_pdbs_and_loses_nothing(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    nodes = [
        _node("cp-1", "control-plane"),
        _node("w-1"),
        _node("w-2"),
        _node("w-3"),
    ]
    lab = make_lab(
        _spec(
            nodes,
            [
                _deployment("db", 3, pdb={"minAvailable": 3}),
            ],
        )
    )
    node = node_with(lab, WORKERS, "db")
    db_pods = sorted(k for k in keys(lab.pods_on(node)) if k.startswith("default/db"))
    assert cordon(lab.api, node) is True
    with pytest.raises(DrainTimeout) as ei:
        drain(lab.api, node, timeout=1.5, poll=POLL, retry_delay=RETRY)
    err = ei.value
    msg = str(err)
    assert err.node == node
    assert sorted(err.remaining) == db_pods
    for k in db_pods:
        assert k in msg
    assert "blocked by PodDisruptionBudget default/db (minAvailable 3" in msg
    assert "last eviction error" in msg
    assert "\n" not in msg
    assert keys(lab.pods_on(node)) >= set(db_pods)  # nothing was lost
    assert is_unschedulable(get_node(lab.api, node))  # the drain never uncordons


def test_a_drain_held_by_a_budget_says_what_it_waits_for(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    """A drain that a PodDisruptionBudget holds is not silent: at once, then every
    ``progress_every`` seconds, it names the pods, the budget's answer and the time left."""
    from upgrader.execute.ops import ApiKubeOps, DrainOptions

    workload = {"kind": "Deployment", "name": "db", "replicas": 3, "grace_period": 0}
    lab = make_lab(
        _spec(
            [_node("cp-1", "control-plane"), _node("w-1"), _node("w-2"), _node("w-3")],
            [{**workload, "pdb": {"minAvailable": 3}}],
        )
    )
    node = node_with(lab, WORKERS, "db")
    db_pods = sorted(k for k in keys(lab.pods_on(node)) if k.startswith("default/db"))
    said: list[tuple[float, str]] = []
    start = time.monotonic()
    options = DrainOptions(
        timeout=3.0,
        retry_interval=RETRY,
        on_progress=lambda text: said.append((time.monotonic() - start, text)),
        progress_every=1.0,
    )
    with pytest.raises(DrainTimeout):
        ApiKubeOps(lab.api).drain(node, options)
    assert len(said) >= 2, said
    first = said[0][1]
    assert first.startswith("drain held by a PodDisruptionBudget: ")
    assert any(k in first for k in db_pods), (first, db_pods)
    assert all(any(k in t for _, t in said) for k in db_pods)  # every held pod is named
    assert "disruption budget" in first and "s of 3s left" in first
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(said)]
    assert all(g >= 0.9 for g in gaps), gaps  # throttled: one line per interval


def test_pod_under_several_pdbs_fails_the_drain(drain_lab: Callable[..., Lab]) -> None:
    lab = drain_lab(_deployment("multi", 3, pdb=TWO_PDBS))
    node = node_with(lab, WORKERS, "multi")
    cordon(lab.api, node)
    with pytest.raises(StepFailed) as ei:
        drain(lab.api, node, timeout=30, poll=POLL, retry_delay=RETRY)
    assert not isinstance(ei.value, DrainTimeout)
    assert "more than one PodDisruptionBudget" in str(ei.value)
    assert "default/multi" in str(ei.value)


def test_disable_eviction_deletes_without_asking_pdbs(
    drain_lab: Callable[..., Lab],
) -> None:
    lab = drain_lab(_deployment("db", 3, grace_period=1, pdb={"minAvailable": 3}))
    node = node_with(lab, WORKERS, "db")
    must_go = non_daemon(lab.pods_on(node))
    cordon(lab.api, node)
    res = drain(
        lab.api,
        node,
        timeout=60,
        disable_eviction=True,
        grace_period=0,
        poll=POLL,
        retry_delay=RETRY,
    )
    assert res.used_eviction is False
    assert set(res.evicted) == must_go
    assert non_daemon(lab.pods_on(node)) == set()


def test_drain_fallback_deletes_what_budgets_still_refuse(
    drain_lab: Callable[..., Lab],
) -> None:
    """--drain-fallback delete: once the timeout ran out, the pods a budget refuses (429
    until then, or several budgets) are deleted, the caller told which and which budgets,
    and the drain finishes; the other pods were evicted as usual."""
    lab = drain_lab(
        _deployment("db", 3, grace_period=1, pdb={"minAvailable": 3}),
        _deployment("multi", 3, pdb=TWO_PDBS),
        {"kind": "Deployment", "name": "web", "replicas": 3, "grace_period": 0},
    )
    node = node_with(lab, WORKERS, "db")
    on_node = non_daemon(lab.pods_on(node))
    held = {k for k in on_node if k.startswith(("default/db", "default/multi"))}
    assert held and on_node - held  # a web pod too, evicted the ordinary way
    told: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    cordon(lab.api, node)
    res = drain(
        lab.api,
        node,
        timeout=1.5,
        poll=POLL,
        retry_delay=RETRY,
        fallback="delete",
        on_fallback=lambda pods, budgets: told.append((pods, budgets)),
    )
    assert set(res.fallback_deleted) == held
    expected: set[str] = set()
    if any(k.startswith("default/db") for k in held):
        expected.add("default/db")
    if any(k.startswith("default/multi") for k in held):
        expected |= {"default/multi", "default/multi-too"}
    assert set(res.overridden_budgets) == expected
    assert told == [(res.fallback_deleted, res.overridden_budgets)]
    assert set(res.evicted) == on_node
    assert non_daemon(lab.pods_on(node)) == set()


def test_pod_selector_drains_only_matching_pods(
    drain_lab: Callable[..., Lab],
) -> None:
    lab = drain_lab(
        {"kind": "Deployment", "name": "web", "replicas": 3, "grace_period": 0},
        {"kind": "Deployment", "name": "db", "replicas": 3, "grace_period": 0},
    )
    node = node_with(lab, WORKERS, "web")
    before = non_daemon(lab.pods_on(node))
    web = {k for k in before if k.startswith("default/web")}
    cordon(lab.api, node)
    res = drain(lab.api, node, timeout=30, poll=POLL, retry_delay=RETRY, pod_selector="app=web")
    assert set(res.evicted) == web
    assert non_daemon(lab.pods_on(node)) == before - web  # the db pods stay
    assert res.left >= len(before - web)


# --------------------------------------------------------------------------- lease


def test_lease_acquire_refuse_break_renew_release(
    make_lab: Callable[[dict[str, Any]], Lab],
) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane")], []))
    a = lease.default_holder("run-a", user="alice", host="laptop")
    b = lease.default_holder("run-b", user="bob", host="desk")
    assert a == "alice@laptop/run-a"

    got = lease.acquire(lab.api, "run-a", a, duration=60)
    assert got.holder == a and got.previous_holder is None
    # acquiring again as the same holder is fine (a resumed run)
    assert lease.acquire(lab.api, "run-a", a, duration=60).holder == a

    with pytest.raises(LockHeld) as ei:
        lease.acquire(lab.api, "run-b", b, duration=60)
    msg = str(ei.value)
    assert a in msg and "last renewed" in msg and "--break-lock" in msg
    assert "\n" not in msg

    broken = lease.acquire(lab.api, "run-b", b, duration=60, break_lock=True)
    assert broken.holder == b and broken.previous_holder == a
    assert broken.transitions >= 1

    with pytest.raises(LockHeld, match="lost the cluster lock"):
        lease.renew(lab.api, a)
    assert lease.release(lab.api, a) is False  # not ours any more
    renewed = lease.renew(lab.api, b)
    assert renewed.holder == b
    assert lease.release(lab.api, b) is True
    obj = lease.read_lease(lab.api)
    assert obj is not None and not obj["spec"].get("holderIdentity")
    assert lease.acquire(lab.api, "run-a", a).holder == a


def test_lease_expired_holder_is_taken_over(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane")], []))
    lease.acquire(lab.api, "run-a", "a@h/run-a", duration=30)

    def later() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=120)

    got = lease.acquire(lab.api, "run-b", "b@h/run-b", duration=30, now=later)
    assert got.holder == "b@h/run-b"
    assert got.previous_holder == "a@h/run-a"


def test_lease_concurrent_acquire_has_one_winner(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane")], []))
    results: dict[str, str] = {}
    barrier = threading.Barrier(4)

    def contender(i: int) -> None:
        barrier.wait()
        try:
            lease.acquire(lab.api, f"run-{i}", f"u@h/run-{i}", duration=60)
            results[f"run-{i}"] = "won"
        except LockHeld:
            results[f"run-{i}"] = "held"

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["held", "held", "held", "won"]
    winner = next(k for k, v in results.items() if v == "won")
    obj = lease.read_lease(lab.api)
    assert obj is not None and obj["spec"]["holderIdentity"] == f"u@h/{winner}"


def test_lease_keeper_renews_and_notices_loss(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_spec([_node("cp-1", "control-plane")], []))
    a = "a@h/run-a"
    lease.acquire(lab.api, "run-a", a, duration=30)
    with lease.LeaseKeeper(lab.api, a, duration=30, interval=0.05) as keeper:
        wait_for(lambda: keeper.renewals >= 2, what="two renewals")
        keeper.check()
    obj = lease.read_lease(lab.api)
    assert obj is not None and not obj["spec"].get("holderIdentity")  # released on exit

    lease.acquire(lab.api, "run-a", a, duration=30)
    lost: list[Exception] = []
    keeper = lease.LeaseKeeper(lab.api, a, duration=30, interval=0.05, on_lost=lost.append)
    keeper.start()
    try:
        lease.acquire(lab.api, "run-b", "b@h/run-b", duration=30, break_lock=True)
        wait_for(lambda: keeper.lost is not None, what="the keeper to notice")
        with pytest.raises(LockHeld, match="b@h/run-b"):
            keeper.check()
        assert len(lost) == 1
    finally:
        keeper.stop()
    obj = lease.read_lease(lab.api)
    assert obj is not None and obj["spec"]["holderIdentity"] == "b@h/run-b"  # not released


# --------------------------------------------------------------------------- retries


def test_transient_api_errors_are_retried_and_logged(
    make_lab: Callable[[dict[str, Any]], Lab], caplog: pytest.LogCaptureFixture
) -> None:
    lab = make_lab(_one_worker_with_api_fault(path_prefix="/api/v1/nodes", status=503, times=3))
    caplog.set_level(logging.DEBUG, logger="upgrader.kube")
    node = get_node(lab.api, "w-1")
    assert node["metadata"]["name"] == "w-1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("GET node w-1: attempt" in w and "503" in w for w in warnings)


def test_retries_are_bounded(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_one_worker_with_api_fault(path_prefix="/api/v1/nodes", status=500, times=50))
    policy = RetryPolicy(attempts=3, max_time=30, initial=0.05, max_delay=0.1, jitter=0.05)
    with pytest.raises(ApiError) as ei:
        request_json(CoreV1Api(lab.api).read_node, "w-1", what="GET node w-1", policy=policy)
    assert ei.value.status == 500
    assert str(ei.value).startswith("GET node w-1: 500")


def test_request_timeout_is_retried(make_lab: Callable[[dict[str, Any]], Lab]) -> None:
    lab = make_lab(_one_worker_with_api_fault(path_prefix="/api/v1/nodes/w-1", timeout=3, times=1))
    policy = RetryPolicy(attempts=3, max_time=30, initial=0.05, max_delay=0.1, jitter=0.05)
    obj = request_json(
        CoreV1Api(lab.api).read_node, "w-1", what="GET node w-1", policy=policy, timeout=1.0
    )
    assert obj["metadata"]["name"] == "w-1"
