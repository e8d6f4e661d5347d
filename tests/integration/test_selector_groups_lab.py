"""``--selector`` end to end against the lab (1 control plane + 4 workers with zone labels
on their Node objects): ``apply --selector zone=a`` upgrades the control plane and exactly
the zone-a workers, the others stay at the old version and schedulable; a run paused by
``--canary`` and continued WITHOUT the flag keeps its selection (the stored plan), and
``status`` shows it; a malformed selector, one matching no worker, and ``--group-by`` with
``--max-unavailable`` are refused before anything runs. Real CLI in a subprocess, real
sshd, the lab's API over HTTPS, checked with the real ``kubectl`` (helpers of
apply_kit). The groups side by side: test_worker_groups_lab.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apply_kit import ONE_WORKER_LOAD, TARGET, Lab, lab_node
from cli_run import cli

OLD = "v1.27.8"
ZONE = "topology.kubernetes.io/zone"
ZONES = {"w-1": "a", "w-2": "a", "w-3": "b", "w-4": "b"}


def spec() -> dict[str, Any]:
    return {
        "version": OLD,
        "nodes": [
            lab_node("cp-1", "control-plane"),
            *(lab_node(w, labels={ZONE: z}) for w, z in ZONES.items()),
        ],
        "workloads": ONE_WORKER_LOAD,
    }


def test_selector_upgrades_exactly_the_matching_workers(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(spec())
    # refused before any node is changed: a malformed selector, one matching no worker
    bad = lab.apply("--selector", f"{ZONE} in (a")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --selector: ")
    assert "Traceback" not in bad.stderr and not lab.state.exists()
    none = lab.apply("--selector", f"{ZONE}=c")
    assert none.returncode == 2, none.stdout + none.stderr
    assert f"--selector: {ZONE}=c matches no worker" in none.stderr
    assert "Traceback" not in none.stderr
    both = lab.apply("--group-by", ZONE, "--max-unavailable", "2")
    assert both.returncode == 2, both.stdout + both.stderr
    assert "--group-by: not with --max-unavailable" in both.stderr
    assert not lab.state.exists()
    assert all(lab.changes(n) == [] for n in ("cp-1", *ZONES))

    plan = cli("plan", "-i", str(lab.inventory), "--to", TARGET, "--selector", f"{ZONE}=a")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"Workers: 2 of 4 selected by {ZONE}=a" in plan.stdout
    assert "w-3" not in plan.stdout and "w-4" not in plan.stdout

    # paused after the canary (w-1); continued WITHOUT --selector: the run keeps it
    first = lab.apply("--selector", f"{ZONE}=a", "--canary", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert lab.state_doc()["status"] == "paused"
    status = cli("status", "-i", str(lab.inventory), timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{ZONE}=a" in status.stdout

    again = lab.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert lab.state_doc()["status"] == "succeeded"
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {
        "cp-1": TARGET,
        "w-1": TARGET,
        "w-2": TARGET,
        "w-3": OLD,
        "w-4": OLD,
    }
    assert not any(v["unschedulable"] for v in nodes.values())
    assert all(v["ready"] for v in nodes.values())
    for w in ("w-1", "w-2"):
        assert sum("kubeadm upgrade node" in c for c in lab.calls(w)) == 1
    for w in ("w-3", "w-4"):  # untouched (downloads of the prestage aside)
        assert lab.changes(w) == []
    assert not any(
        e.get("node") in ("w-3", "w-4") and e["event"] == "node-cordoned" for e in lab.events_list()
    )
