"""``upgrader apply`` end to end against the lab, runs that go through: a real OpenSSH sshd
per lab, the simulated node tools, the lab's Kubernetes API over HTTPS. Every test starts
its own lab from a spec (short delays; ``make_lab``), runs the real CLI in a subprocess,
and checks the outcome with the real ``kubectl`` (``get nodes -o json``), the nodes'
``calls.jsonl`` and the state file. Runs that stop: test_apply_resume_lab.py and
test_apply_faults_lab.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from apply_kit import ONE_WORKER_LOAD, TARGET, Lab, all_at, cluster_spec, lab_node, stop_text
from cli_run import cli
from golden_check import check_golden

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- happy paths


def test_one_control_plane_three_workers(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(cluster_spec("v1.27.8", workers=3))
    # without --yes and without a terminal to ask: refused before anything changes
    ask = cli(*[a for a in lab.apply_args() if a != "--yes"])
    assert ask.returncode == 2, ask.stdout + ask.stderr
    assert "--yes" in ask.stderr and not lab.state.exists()
    assert all(lab.changes(n) == [] for n in ("cp-1", "w-1", "w-2", "w-3"))

    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
    # apply shows the brief plan before it runs, not every command of every node
    assert "Order:" in r.stdout and "skipped when" not in r.stdout

    # exactly one `kubeadm upgrade apply`, on the first control plane; workers run `node`
    assert sum("kubeadm upgrade apply" in c for c in lab.calls("cp-1")) == 1
    for w in ("w-1", "w-2", "w-3"):
        assert sum("kubeadm upgrade node" in c for c in lab.calls(w)) == 1
        assert not any("upgrade apply" in c for c in lab.calls(w))

    state = lab.state_doc()
    assert state["status"] == "succeeded" and state["target"] == TARGET
    assert {s["status"] for s in state["steps"].values()} <= {"succeeded", "skipped"}
    transcripts = Path(state["transcripts"])
    assert {p.name for p in transcripts.iterdir()} >= {"cp-1.log", "w-1.log", "w-3.log"}
    assert "kubeadm upgrade apply" in (transcripts / "cp-1.log").read_text()
    token = (lab.dir / "secrets" / "admin-token").read_text().strip()
    assert token not in (transcripts / "cp-1.log").read_text()
    assert token not in lab.events.read_text() and token not in lab.state_files_text()

    kinds = [e["event"] for e in lab.events_list()]
    assert kinds[0] == "run-started" and kinds[-1] == "run-finished"
    assert {"step-started", "step-finished", "node-cordoned", "node-uncordoned"} <= set(kinds)

    st = cli("status", "-i", str(lab.inventory), "--json")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["run"]["status"] == "succeeded"
    assert {n["node"]: n["state"] for n in doc["nodes"]} == {
        "cp-1": "done",
        "w-1": "done",
        "w-2": "done",
        "w-3": "done",
    }
    assert doc["lock"] == "free"

    # the lab itself shows where the cluster is now, and where its spec started it
    ls = cli("lab", "status", "--dir", str(lab.dir))
    assert ls.returncode == 0, ls.stdout + ls.stderr
    assert f"cluster {TARGET} (the spec started it at v1.27.8)" in ls.stdout
    assert f"kubelet:   {TARGET} on cp-1, w-1, w-2, w-3" in ls.stdout

    again = lab.apply()
    assert again.returncode == 0, again.stderr
    assert "Nothing to do" in again.stdout

    down = cli("apply", "-i", str(lab.inventory), "--to", "v1.26.15", "--yes")
    assert down.returncode == 3, down.stdout + down.stderr
    assert "DOWNGRADE" in down.stdout and "blocker" in down.stderr
    check_golden("stop-blocker.txt", stop_text(lab, down.stderr))


def test_two_minors_through_the_middle_one(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(cluster_spec("v1.26.11", workers=1, workloads=ONE_WORKER_LOAD))
    r = lab.apply("--strategy", "per-hop")
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    state = lab.state_doc()
    assert len(state["hops"]) == 2 and state["hops"][0].startswith("v1.27.")
    assert state["hops"][1] == TARGET
    applies = [c for c in lab.calls("cp-1") if "kubeadm upgrade apply" in c]
    assert len(applies) == 2 and "v1.27." in applies[0] and TARGET in applies[1]


def test_three_control_planes_and_a_dnf_worker(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [
                lab_node("cp-1", "control-plane"),
                lab_node("cp-2", "control-plane"),
                lab_node("cp-3", "control-plane"),
                lab_node("w-1", os_family="rhel"),
            ],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    assert sum("kubeadm upgrade apply" in c for c in lab.calls("cp-1")) == 1
    for cp in ("cp-2", "cp-3"):
        assert sum("kubeadm upgrade node" in c for c in lab.calls(cp)) == 1
        assert not any("upgrade apply" in c for c in lab.calls(cp))
    assert any(c.startswith("dnf") and "install" in c for c in lab.calls("w-1"))
    assert not any(c.startswith("apt-get") for c in lab.calls("w-1"))
    # control planes go first: cp-3's kubeadm ran before w-1 installed anything (the
    # prestage visits run all at once, in threads: their start order is not the plan's)
    events = lab.events_list()
    first = {
        e.get("node"): i
        for i, e in reversed(list(enumerate(events)))
        if e["event"] == "node-started" and e.get("phase") != "prestage"
    }
    assert first["cp-1"] < first["cp-2"] < first["cp-3"] < first["w-1"]


def test_a_precordoned_worker_stays_cordoned(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [
                lab_node("cp-1", "control-plane"),
                lab_node("w-1"),
                lab_node("w-2", cordoned=True),
            ],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    nodes = lab.nodes()
    assert nodes["w-2"]["unschedulable"] is True
    assert nodes["w-1"]["unschedulable"] is False and nodes["cp-1"]["unschedulable"] is False
    state = lab.state_doc()
    assert state["precordoned"] == ["w-2"]
    assert state["steps"][f"{TARGET}/w-2/worker/uncordon"]["status"] == "skipped"
