"""``upgrader apply`` against the lab under faults from outside the run: a
PodDisruptionBudget that never allows an eviction (the drain times out; its stop message is
tests/golden/stop-drain-timeout.txt), an SSH session dropped mid-command, the API server
unavailable for a while."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from apply_kit import TARGET, Lab, all_at, cluster_spec, one_worker_lab, stop_text, wait_event
from golden_check import check_golden

pytestmark = pytest.mark.integration


def test_pdb_that_never_allows_eviction(make_lab: Callable[..., Lab]) -> None:
    # The preflight refuses a PodDisruptionBudget that can never allow an eviction, so the
    # budget appears after it (someone creates it while the run is under way): the
    # control plane's `kubeadm upgrade plan` hangs a few seconds to leave room for that.
    lab = make_lab(
        cluster_spec(
            "v1.27.8",
            workers=2,
            workloads=[
                {"kind": "Deployment", "name": "db", "replicas": 2},
                {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            ],
            faults=[{"node": "cp-1", "match": "kubeadm upgrade plan", "times": 1, "hang": 4}],
        )
    )
    proc = lab.start_apply("--drain-timeout", "3")
    try:
        wait_event(
            lab, proc, "step-started", f"{TARGET}/cp-1/first-control-plane/kubeadm-upgrade-plan"
        )
        lab.kubectl("create", "poddisruptionbudget", "db", "--selector=app=db", "--min-available=2")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "PodDisruptionBudget default/db" in err, err
    check_golden("stop-drain-timeout.txt", stop_text(lab, err))
    state = lab.state_doc()
    failed = [k for k, s in state["steps"].items() if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0].endswith("/drain"), failed
    node = state["steps"][failed[0]]["node"]
    assert lab.nodes()[node]["unschedulable"] is False  # we cordoned it: uncordoned again
    assert state["cordoned_by_us"] == {}
    after = list(state["steps"])[list(state["steps"]).index(failed[0]) + 1 :]
    assert after and all(state["steps"][k]["status"] == "pending" for k in after)
    assert not any("kubelet" in c and "install" in c for c in lab.changes(node))
    assert not any(c for n in ("w-1", "w-2") if n != node for c in lab.changes(n) if "kubelet" in c)


def test_ssh_session_dropped_mid_command(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        one_worker_lab(
            faults=[{"node": "w-1", "match": "kubeadm upgrade node", "times": 1, "drop": True}],
        )
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    rec = lab.state_doc()["steps"][f"{TARGET}/w-1/worker/kubeadm-upgrade-node"]
    assert rec["attempts"] == 2
    failed = [e for e in lab.events_list() if e["event"] == "step-attempt-failed"]
    assert any("dropped" in e["error"] for e in failed)


def test_api_unavailable_for_a_while(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        one_worker_lab(
            faults=[
                {
                    "api": {
                        "method": "GET",
                        "path_prefix": "/api/v1/nodes",
                        "status": 503,
                        "times": 4,
                    }
                },
                {
                    "api": {
                        "method": "PATCH",
                        "path_prefix": "/api/v1/nodes",
                        "status": 503,
                        "times": 2,
                    }
                },
            ],
        )
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
