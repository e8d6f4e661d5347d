"""``upgrader apply`` against the lab, runs that stop and are resumed: a step that fails on
every attempt, a SIGKILL mid-step, SIGTERM and SIGINT mid-step. The last lines of every
way a run stops are golden files (tests/golden/stop-*.txt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from apply_kit import TARGET, Lab, all_at, cluster_spec, one_worker_lab, stop_text, wait_event
from cli_run import cli, cli_env
from golden_check import check_golden

from upgrader import state as upgrader_state

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- failures and resume


def test_failed_step_stops_the_run_and_a_rerun_resumes(make_lab: Callable[..., Lab]) -> None:
    # The step is retry-safe (3 attempts): it fails on each of them in the first run.
    lab = make_lab(
        cluster_spec(
            "v1.27.8",
            workers=3,
            faults=[
                {
                    "node": "w-2",
                    "match": "kubeadm upgrade node",
                    "times": 3,
                    "exit": 1,
                    "stderr": "simulated failure",
                }
            ],
        )
    )
    r = lab.apply()
    assert r.returncode == 1, r.stdout + r.stderr
    step = f"{TARGET}/w-2/worker/kubeadm-upgrade-node"
    assert "w-2" in r.stderr and step in r.stderr and "simulated failure" in r.stderr
    # the error line first, then what the run left and what to do about it
    error, where, cordoned, resume = r.stderr.strip().splitlines()[-4:]
    assert error.startswith("error: ") and step in error
    assert where == f"stopped at: step {step} on w-2 failed"
    assert cordoned.startswith("cordoned by this run: ")
    assert resume.startswith(f"resume with: upgrader apply -i {lab.inventory} --to {TARGET} ")
    check_golden("stop-step-failed.txt", stop_text(lab, r.stderr))
    assert lab.changes("w-3") == []  # the third worker was not touched
    w1_before = lab.changes("w-1")
    assert sum("kubeadm upgrade node" in c for c in w1_before) == 1
    state = lab.state_doc()
    assert state["status"] == "failed"
    assert state["steps"][step]["status"] == "failed" and state["steps"][step]["attempts"] == 3

    st = cli("status", "-i", str(lab.inventory))
    assert st.returncode == 0, st.stderr
    assert f"failed at step {step}" in st.stdout and "simulated failure" in st.stdout
    assert "w-2.log" in st.stdout  # where the failed node's transcript is

    other = cli("apply", "-i", str(lab.inventory), "--to", "v1.28.3", "--yes")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "--abandon" in other.stderr and TARGET in other.stderr

    # another run holds the state file's lock: refused before anything is read, exit 6
    held = upgrader_state.StateFile(lab.state).lock("0123456789ab").acquire()
    try:
        locked = lab.apply()
    finally:
        held.release()
    assert locked.returncode == 6, locked.stdout + locked.stderr
    assert locked.stdout == ""  # nothing gathered, no plan shown
    check_golden("stop-run-lock-held.txt", stop_text(lab, locked.stderr))

    # another run holds the cluster Lease: the resume is refused, exit 6, and says what the
    # failed run left
    from upgrader.kube import lease
    from upgrader.kube.client import make_api_client

    api = make_api_client(lab.dir / "kubeconfig", None)
    holder = lease.default_holder("0123456789ab", user="someone", host="elsewhere")
    lease.acquire(api, "0123456789ab", holder, duration=600)
    try:
        leased = lab.apply()
    finally:
        assert lease.release(api, holder)
    assert leased.returncode == 6, leased.stdout + leased.stderr
    assert "someone@elsewhere/0123456789ab" in leased.stderr, leased.stderr
    check_golden("stop-cluster-lock-held.txt", stop_text(lab, leased.stderr))

    r2 = lab.apply()
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert lab.changes("w-1") == w1_before  # nothing repeated on the first worker
    all_at(lab)
    # the summary's "before" is where the run started, not where the resume found it
    summary = json.loads(lab.state.with_name(lab.state.name + ".summary.json").read_text())
    before = {n["node"]: n["before"]["kubelet"] for n in summary["nodes"]}
    assert before == dict.fromkeys(("cp-1", "w-1", "w-2", "w-3"), "v1.27.8"), before
    assert not any(v["unschedulable"] for v in lab.nodes().values())


def test_sigkill_mid_step_then_resume(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        one_worker_lab(
            # the install, not the prestage download (`apt-get install --download-only ...`)
            faults=[{"node": "w-1", "match": "apt-get install -y", "times": 1, "hang": 30}],
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "upgrader", *lab.apply_args()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    step = f"{TARGET}/w-1/worker/kubeadm-package"
    try:
        wait_event(lab, proc, "step-started", step)
        time.sleep(0.5)  # the hanging `apt-get install` is running on the node
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    state = lab.state_doc()
    assert state["steps"][step]["status"] == "running"
    st = cli("status", "-i", str(lab.inventory), "--json")
    doc = json.loads(st.stdout)
    assert {n["node"]: n["state"] for n in doc["nodes"]}["w-1"] == "running"
    assert doc["lock"] == "free"  # the kernel dropped the dead run's file lock
    # recorded as running, but nobody runs it: status says so instead of "running"
    assert (doc["run"]["status"], doc["run"]["recorded_status"]) == ("killed", "running")

    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    resumed = [e for e in lab.events_list() if e["event"] == "step-checked" and e["step"] == step]
    assert resumed and resumed[-1]["resumed"] is True
    assert lab.state_doc()["run_id"] == state["run_id"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_mid_step_records_interrupted_and_says_what_it_left(
    make_lab: Callable[..., Lab], signum: signal.Signals
) -> None:
    """SIGTERM (a service manager) and SIGINT (Ctrl-C) stop the run the same way."""
    lab = make_lab(
        one_worker_lab(
            # the kubelet install, after w-1's drain
            faults=[{"node": "w-1", "match": "Timeout=300 kubelet=", "times": 1, "hang": 30}],
        )
    )
    proc = lab.start_apply()
    step = f"{TARGET}/w-1/worker/kubelet-kubectl-packages"
    try:
        wait_event(lab, proc, "step-started", step)
        time.sleep(0.5)  # the hanging `apt-get install` is running on the node
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    tail = err.strip().splitlines()[-4:]
    assert tail[0].startswith("error: interrupted: run ") and tail[0].endswith("as interrupted")
    assert tail[1] == f"stopped at: step {step} on w-1 was running (re-checked first)"
    assert tail[2] == "cordoned by this run: w-1"
    assert tail[3].startswith(f"resume with: upgrader apply -i {lab.inventory} --to {TARGET}")
    assert "Traceback" not in err
    check_golden(f"stop-{signum.name.lower()}.txt", stop_text(lab, err))
    assert lab.state_doc()["status"] == "interrupted"
    assert lab.nodes()["w-1"]["unschedulable"] is True
    st = cli("status", "-i", str(lab.inventory))
    assert f"interrupted, target {TARGET}" in st.stdout and "resumes it" in st.stdout
    assert "w-1" in st.stdout and "[cordoned by this run]" in st.stdout
    finished = [e for e in lab.events_list() if e["event"] == "run-finished"]
    assert finished[-1]["ok"] is False and "interrupted" in finished[-1]["error"]

    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    assert not lab.nodes()["w-1"]["unschedulable"]
