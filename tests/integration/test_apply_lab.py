"""``upgrader apply`` end to end against the lab: a real OpenSSH sshd per lab, the simulated
node tools, the lab's Kubernetes API over HTTPS. Every test starts its own lab from a spec
(short delays), runs the real CLI in a subprocess, and checks the outcome with the real
``kubectl`` (``get nodes -o json``), the nodes' ``calls.jsonl`` and the state file. The
last lines of every way a run stops (a failed step, a drain timeout, SIGINT, SIGTERM, a
blocker, the state file's lock or the cluster Lease held) are golden files
(tests/golden/stop-*.txt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import cli, cli_env
from golden_check import check_golden, normalise, stop_message
from labkit import LabFiles, fast_playbooks, lab_down, lab_up

from upgrader import state as upgrader_state

pytestmark = pytest.mark.integration

TARGET = "v1.28.4"
DOWNLOAD_ONLY = ("--download-only", "--downloadonly")  # the prestage phase's downloads


class Lab(LabFiles):
    """A lab of the kit and the test's own files in ``work`` (playbooks, events)."""

    def __init__(self, lab_dir: Path, work: Path) -> None:
        super().__init__(lab_dir)
        self.work = work

    @property
    def events(self) -> Path:
        return self.work / "events.jsonl"

    def apply_args(self, *extra: str) -> list[str]:
        return [
            "apply",
            "-i",
            str(self.inventory),
            "--to",
            TARGET,
            "--yes",
            "--playbooks",
            str(self.work / "playbooks"),
            "--events",
            str(self.events),
            *extra,
        ]

    def apply(self, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return cli(*self.apply_args(*extra), timeout=timeout)

    def start_apply(self, *extra: str) -> subprocess.Popen[str]:
        """``apply`` in the background (stdout and stderr piped, as text), to be signalled
        or waited for."""
        return subprocess.Popen(
            [sys.executable, "-m", "upgrader", *self.apply_args(*extra)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
            text=True,
        )

    def nodes(self) -> dict[str, dict[str, Any]]:
        """``kubectl get nodes -o json``: name -> {kubelet, unschedulable, ready}."""
        result = {}
        for item in json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]:
            conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            result[item["metadata"]["name"]] = {
                "kubelet": item["status"]["nodeInfo"]["kubeletVersion"],
                "unschedulable": bool(item["spec"].get("unschedulable")),
                "ready": conds.get("Ready") == "True",
            }
        return result

    def calls(self, node: str) -> list[str]:
        """The command lines the node's simulated tools ran, in order."""
        return [" ".join(str(a) for a in r.get("argv") or []) for r in self.records(node)]

    def changes(self, node: str) -> list[str]:
        """Calls that change the node (not the read-only fact gathering, nor the prestage
        phase's package downloads)."""
        words = ("install", "upgrade node", "upgrade apply", "restart", "unhold", "makecache")
        return [
            c
            for c in self.calls(node)
            if any(w in c for w in words) and not any(d in c for d in DOWNLOAD_ONLY)
        ]

    def state_doc(self) -> dict[str, Any]:
        """The recorded run as every reader sees it: the state file, its journal replayed."""
        run = upgrader_state.load(self.state)
        assert run is not None, f"no state file at {self.state}"
        return run.to_dict()

    def state_files_text(self) -> str:
        """The bytes of the state file and of its journal (if any), as text."""
        journal = upgrader_state.journal_path(self.state)
        return self.state.read_text() + (journal.read_text() if journal.exists() else "")

    def events_list(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(x) for x in self.events.read_text().splitlines() if x.strip()]


def _node(name: str, role: str = "worker", **kw: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **kw}


# With a single worker, an evicted pod has nowhere to go until the worker is back: no PDB.
ONE_WORKER_LOAD = [
    {"kind": "Deployment", "name": "web", "replicas": 2},
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
]
FAST = {"kubelet_ready": 0.3, "package_install": 0.0, "pod_termination": 0.1, "download": 0.0}


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    started: list[Lab] = []

    def make(spec: dict[str, Any]) -> Lab:
        n = len(started)
        work = tmp_path / f"work{n}"
        fast_playbooks(work / "playbooks")
        lab = Lab(tmp_path / f"lab{n}", work)
        started.append(lab)
        lab_up(lab.dir, {"delays": FAST, **spec})
        return lab

    yield make
    for lab in started:
        lab_down(lab.dir)


def _wait_event(lab: Lab, proc: subprocess.Popen[Any], kind: str, step: str) -> None:
    """Wait until the run's events file shows ``kind`` for ``step``."""
    deadline = time.monotonic() + 240
    while not any(e["event"] == kind and e.get("step") == step for e in lab.events_list()):
        assert proc.poll() is None, f"apply ended before {kind} {step}"
        assert time.monotonic() < deadline, f"no {kind} event for {step}"
        time.sleep(0.05)


def _stop(lab: Lab, stderr: str) -> str:
    """The stop message at the end of ``stderr``, its variable parts as placeholders."""
    return normalise(stop_message(stderr), inventory=lab.inventory, lab=lab.dir, work=lab.work)


def _all_at(lab: Lab, version: str = TARGET) -> None:
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {n: version for n in nodes}
    assert all(v["ready"] for v in nodes.values())


# --------------------------------------------------------------------------- happy paths


def test_one_control_plane_three_workers(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1"), _node("w-2"), _node("w-3")],
        }
    )
    # without --yes and without a terminal to ask: refused before anything changes
    ask = cli(*[a for a in lab.apply_args() if a != "--yes"])
    assert ask.returncode == 2, ask.stdout + ask.stderr
    assert "--yes" in ask.stderr and not lab.state.exists()
    assert all(lab.changes(n) == [] for n in ("cp-1", "w-1", "w-2", "w-3"))

    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
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
    check_golden("stop-blocker.txt", _stop(lab, down.stderr))


def test_two_minors_through_the_middle_one(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.26.11",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1")],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    r = lab.apply("--strategy", "per-hop")
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
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
                _node("cp-1", "control-plane"),
                _node("cp-2", "control-plane"),
                _node("cp-3", "control-plane"),
                _node("w-1", os_family="rhel"),
            ],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
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
            "nodes": [_node("cp-1", "control-plane"), _node("w-1"), _node("w-2", cordoned=True)],
            "workloads": ONE_WORKER_LOAD,
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
    nodes = lab.nodes()
    assert nodes["w-2"]["unschedulable"] is True
    assert nodes["w-1"]["unschedulable"] is False and nodes["cp-1"]["unschedulable"] is False
    state = lab.state_doc()
    assert state["precordoned"] == ["w-2"]
    assert state["steps"][f"{TARGET}/w-2/worker/uncordon"]["status"] == "skipped"


# --------------------------------------------------------------------------- failures and resume


def test_failed_step_stops_the_run_and_a_rerun_resumes(make_lab: Callable[..., Lab]) -> None:
    # The step is retry-safe (3 attempts): it fails on each of them in the first run.
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1"), _node("w-2"), _node("w-3")],
            "faults": [
                {
                    "node": "w-2",
                    "match": "kubeadm upgrade node",
                    "times": 3,
                    "exit": 1,
                    "stderr": "simulated failure",
                }
            ],
        }
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
    check_golden("stop-step-failed.txt", _stop(lab, r.stderr))
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
    check_golden("stop-run-lock-held.txt", _stop(lab, locked.stderr))

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
    check_golden("stop-cluster-lock-held.txt", _stop(lab, leased.stderr))

    r2 = lab.apply()
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert lab.changes("w-1") == w1_before  # nothing repeated on the first worker
    _all_at(lab)
    # the summary's "before" is where the run started, not where the resume found it
    summary = json.loads(lab.state.with_name(lab.state.name + ".summary.json").read_text())
    before = {n["node"]: n["before"]["kubelet"] for n in summary["nodes"]}
    assert before == dict.fromkeys(("cp-1", "w-1", "w-2", "w-3"), "v1.27.8"), before
    assert not any(v["unschedulable"] for v in lab.nodes().values())


def test_sigkill_mid_step_then_resume(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1")],
            "workloads": ONE_WORKER_LOAD,
            # the install, not the prestage download (`apt-get install --download-only ...`)
            "faults": [{"node": "w-1", "match": "apt-get install -y", "times": 1, "hang": 30}],
        }
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
        _wait_event(lab, proc, "step-started", step)
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
    _all_at(lab)
    resumed = [e for e in lab.events_list() if e["event"] == "step-checked" and e["step"] == step]
    assert resumed and resumed[-1]["resumed"] is True
    assert lab.state_doc()["run_id"] == state["run_id"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_mid_step_records_interrupted_and_says_what_it_left(
    make_lab: Callable[..., Lab], signum: signal.Signals
) -> None:
    """SIGTERM (a service manager) and SIGINT (Ctrl-C) stop the run the same way."""
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1")],
            "workloads": ONE_WORKER_LOAD,
            # the kubelet install, after w-1's drain
            "faults": [{"node": "w-1", "match": "Timeout=300 kubelet=", "times": 1, "hang": 30}],
        }
    )
    proc = lab.start_apply()
    step = f"{TARGET}/w-1/worker/kubelet-kubectl-packages"
    try:
        _wait_event(lab, proc, "step-started", step)
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
    check_golden(f"stop-{signum.name.lower()}.txt", _stop(lab, err))
    assert lab.state_doc()["status"] == "interrupted"
    assert lab.nodes()["w-1"]["unschedulable"] is True
    st = cli("status", "-i", str(lab.inventory))
    assert f"interrupted, target {TARGET}" in st.stdout and "resumes it" in st.stdout
    assert "w-1" in st.stdout and "[cordoned by this run]" in st.stdout
    finished = [e for e in lab.events_list() if e["event"] == "run-finished"]
    assert finished[-1]["ok"] is False and "interrupted" in finished[-1]["error"]

    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
    assert not lab.nodes()["w-1"]["unschedulable"]


def test_pdb_that_never_allows_eviction(make_lab: Callable[..., Lab]) -> None:
    # The preflight refuses a PodDisruptionBudget that can never allow an eviction, so the
    # budget appears after it (someone creates it while the run is under way): the
    # control plane's `kubeadm upgrade plan` hangs a few seconds to leave room for that.
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1"), _node("w-2")],
            "workloads": [
                {"kind": "Deployment", "name": "db", "replicas": 2},
                {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            ],
            "faults": [{"node": "cp-1", "match": "kubeadm upgrade plan", "times": 1, "hang": 4}],
        }
    )
    proc = lab.start_apply("--drain-timeout", "3")
    try:
        _wait_event(
            lab, proc, "step-started", f"{TARGET}/cp-1/first-control-plane/kubeadm-upgrade-plan"
        )
        lab.kubectl("create", "poddisruptionbudget", "db", "--selector=app=db", "--min-available=2")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "PodDisruptionBudget default/db" in err, err
    check_golden("stop-drain-timeout.txt", _stop(lab, err))
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
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1")],
            "workloads": ONE_WORKER_LOAD,
            "faults": [{"node": "w-1", "match": "kubeadm upgrade node", "times": 1, "drop": True}],
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
    rec = lab.state_doc()["steps"][f"{TARGET}/w-1/worker/kubeadm-upgrade-node"]
    assert rec["attempts"] == 2
    failed = [e for e in lab.events_list() if e["event"] == "step-attempt-failed"]
    assert any("dropped" in e["error"] for e in failed)


def test_api_unavailable_for_a_while(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [_node("cp-1", "control-plane"), _node("w-1")],
            "workloads": ONE_WORKER_LOAD,
            "faults": [
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
        }
    )
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    _all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
