"""``upgrader apply --canary`` end to end against the lab (1 control plane + 3 workers):
the run pauses after the control plane and w-1 (exit 0, recorded ``paused``, ``status``
says so with the command that continues), the same command finishes; ``--hold-uncordon``
without a terminal is refused before anything runs. Real CLI in a subprocess, real sshd,
the lab's API over HTTPS, checked with the real ``kubectl`` (helpers of test_apply_lab)."""

from __future__ import annotations

from collections.abc import Callable

from test_apply_lab import (  # the shared lab fixture and helpers
    TARGET,
    Lab,
    _all_at,
    _node,
    cli,
    make_lab,  # noqa: F401 - a fixture
)

WORKERS = ("w-1", "w-2", "w-3")


def test_canary_pauses_after_w1_and_the_same_command_finishes(
    make_lab: Callable[..., Lab],  # noqa: F811
) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), *(_node(w) for w in WORKERS)],
        }
    )
    # the questions of --hold-uncordon need a terminal: refused before anything runs
    held = lab.apply("--canary", "1", "--hold-uncordon")
    assert held.returncode == 2, held.stdout + held.stderr
    assert "--hold-uncordon" in held.stderr and "terminal" in held.stderr
    assert "Traceback" not in held.stderr and not lab.state.exists()
    assert all(lab.changes(n) == [] for n in ("cp-1", *WORKERS))

    r = lab.apply("--canary", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    cont = f"upgrader apply -i {lab.inventory} --to {TARGET}"
    assert f"paused after canary w-1: inspect it, then continue with: {cont}" in r.stdout
    doc = lab.state_doc()
    assert doc["status"] == "paused" and doc["paused"] == "canary: w-1 done"
    nodes = lab.nodes()
    assert nodes["cp-1"]["kubelet"] == TARGET and nodes["w-1"]["kubelet"] == TARGET
    assert nodes["w-2"]["kubelet"] == "v1.27.8" and nodes["w-3"]["kubelet"] == "v1.27.8"
    assert not any(v["unschedulable"] for v in nodes.values())
    assert any("kubeadm upgrade node" in c for c in lab.changes("w-1"))
    # w-2 and w-3 untouched (the prestage downloads aside, which change nothing)
    assert lab.changes("w-2") == [] and lab.changes("w-3") == []
    kinds = [e["event"] for e in lab.events_list()]
    assert kinds[-1] == "run-paused" and "run-finished" not in kinds

    status = cli("status", "-i", str(lab.inventory), timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert ": paused (canary: w-1 done)," in status.stdout
    assert f"Continue with: {cont}" in status.stdout

    # the same command (with --canary still) continues the paused run to the end
    again = lab.apply("--canary", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "paused" not in again.stdout.splitlines()[-1]
    assert lab.state_doc()["status"] == "succeeded"
    _all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
    for w in WORKERS:  # each worker upgraded exactly once over the two invocations
        assert sum("kubeadm upgrade node" in c for c in lab.calls(w)) == 1
    assert sum("kubeadm upgrade apply" in c for c in lab.calls("cp-1")) == 1
