"""``upgrader apply --canary`` end to end against the lab (1 control plane + 3 workers):
the run pauses after the control plane and w-1 (exit 0, recorded ``paused``, ``status``
says so with the command that continues), the same command finishes; ``--hold-uncordon``
without a terminal is refused before anything runs, and at a terminal (a pseudo-terminal)
shows each node's pods and events before its uncordon, and a "no" pauses the run. Real CLI
in a subprocess, real sshd, the lab's API over HTTPS, checked with the real ``kubectl``
(helpers of apply_kit)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable

from apply_kit import TARGET, Lab, all_at, lab_node, one_worker_lab
from cli_run import cli, cli_env

WORKERS = ("w-1", "w-2", "w-3")


def test_canary_pauses_after_w1_and_the_same_command_finishes(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [lab_node("cp-1", "control-plane"), *(lab_node(w) for w in WORKERS)],
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
    all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
    for w in WORKERS:  # each worker upgraded exactly once over the two invocations
        assert sum("kubeadm upgrade node" in c for c in lab.calls(w)) == 1
    assert sum("kubeadm upgrade apply" in c for c in lab.calls("cp-1")) == 1


def _run_in_pty(args: list[str], answers: dict[str, str], timeout: float = 400) -> tuple[int, str]:
    """The real CLI with a pseudo-terminal as stdin/stdout/stderr (an operator at a
    terminal); each time the output ends with a question of ``answers`` (its start), the
    answer is typed. Returns the exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    env = {**cli_env(), "COLUMNS": "200", "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "upgrader", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    out = b""
    answered = 0
    order = list(answers.items())
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            text = out.decode(errors="replace")
            if answered < len(order) and order[answered][0] in text:
                answer = order[answered][1]
                if text.rstrip().endswith("[y/N]:"):
                    os.write(master, answer.encode() + b"\n")
                    answered += 1
            if proc.poll() is not None and not ready:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out.decode(errors="replace").replace("\r\n", "\n")


def test_hold_uncordon_at_a_terminal_shows_pods_and_events_and_no_pauses(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(one_worker_lab())
    rc, shown = _run_in_pty(
        lab.apply_args("--hold-uncordon"), {"Uncordon cp-1?": "y", "Uncordon w-1?": "n"}
    )
    assert rc == 0, shown
    assert "cp-1 is upgraded and still cordoned. Pods on it" in shown
    assert "w-1 is upgraded and still cordoned. Pods on it" in shown
    assert "kube-system/kube-proxy-" in shown  # the DaemonSet's pod on w-1, through the API
    assert "Recent events of node w-1" in shown
    assert "paused (w-1 left cordoned (--hold-uncordon))" in shown
    doc = lab.state_doc()
    assert doc["status"] == "paused" and doc["paused"] == "w-1 left cordoned (--hold-uncordon)"
    nodes = lab.nodes()
    assert nodes["w-1"]["kubelet"] == TARGET and nodes["w-1"]["unschedulable"]
    assert not nodes["cp-1"]["unschedulable"]

    # the same command without a terminal continues: w-1 uncordoned, the run succeeded
    again = lab.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert lab.state_doc()["status"] == "succeeded"
    all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
