"""The apply tests' lab: a lab of the kit (``labkit``) with the fast playbooks and short
delays, the test's own files beside it, and what an apply test reads back.

Owns :class:`Lab` (``apply`` in the foreground or the background, ``kubectl get nodes``,
the nodes' command lines and changes, the recorded run, the events), the spec pieces the
apply tests share (:func:`cluster_spec`, :func:`one_worker_lab`, :func:`lab_node`,
:data:`ONE_WORKER_LOAD`, :data:`ADDONS`, :data:`FAST`), and the checks :func:`all_at`,
:func:`wait_event`, :func:`stop_text`. The ``make_lab`` fixture that starts these labs (and
brings them down) is in ``conftest.py``.
Must not: start a lab any other way than through ``labkit``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from cli_run import cli, start_cli
from golden_check import normalise, stop_message
from labkit import LabFiles

from bench._perf import flag_spec
from upgrader import state as upgrader_state

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

    def apply_args(self, *extra: str, to: str = TARGET) -> list[str]:
        return [
            "apply",
            "-i",
            str(self.inventory),
            "--to",
            to,
            "--yes",
            "--playbooks",
            str(self.work / "playbooks"),
            "--events",
            str(self.events),
            *extra,
        ]

    def apply(
        self, *extra: str, to: str = TARGET, timeout: float = 400
    ) -> subprocess.CompletedProcess[str]:
        return cli(*self.apply_args(*extra, to=to), timeout=timeout)

    def start_apply(self, *extra: str) -> subprocess.Popen[str]:
        """``apply`` in the background (stdout and stderr piped, as text), to be signalled
        or waited for."""
        return start_cli(*self.apply_args(*extra))

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


def cluster_spec(version: str, workers: int, **keys: Any) -> dict[str, Any]:
    """A lab's spec: ``cp-1`` and the workers ``w-1`` .. ``w-N`` at ``version``, and the
    spec's other top-level ``keys`` (``workloads``, ``faults``, ...)."""
    return flag_spec(1, workers, version=version, **keys)


def one_worker_lab(**keys: Any) -> dict[str, Any]:
    """The small lab most apply tests start: ``cp-1`` and ``w-1`` at v1.27.8 running
    :data:`ONE_WORKER_LOAD`, and the spec's other top-level ``keys`` (``faults``, ...)."""
    return cluster_spec("v1.27.8", 1, workloads=ONE_WORKER_LOAD, **keys)


def lab_node(name: str, role: str = "worker", **kw: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **kw}


# With a single worker, an evicted pod has nowhere to go until the worker is back: no PDB.
ONE_WORKER_LOAD = [
    {"kind": "Deployment", "name": "web", "replicas": 2},
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
]
# The kube-system add-ons ``kubeadm upgrade apply`` moves to the new release.
ADDONS = [
    {"kind": "Deployment", "namespace": "kube-system", "name": "coredns", "replicas": 1},
    {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
]
FAST = {"kubelet_ready": 0.3, "package_install": 0.0, "pod_termination": 0.1, "download": 0.0}


def wait_event(lab: Lab, proc: subprocess.Popen[Any], kind: str, step: str) -> None:
    """Wait until the run's events file shows ``kind`` for ``step``."""
    deadline = time.monotonic() + 240
    while not any(e["event"] == kind and e.get("step") == step for e in lab.events_list()):
        assert proc.poll() is None, f"apply ended before {kind} {step}"
        assert time.monotonic() < deadline, f"no {kind} event for {step}"
        time.sleep(0.05)


def stop_text(lab: Lab, stderr: str) -> str:
    """The stop message at the end of ``stderr``, its variable parts as placeholders."""
    return normalise(stop_message(stderr), inventory=lab.inventory, lab=lab.dir, work=lab.work)


def all_at(lab: Lab, version: str = TARGET) -> None:
    nodes = lab.nodes()
    assert {n: v["kubelet"] for n, v in nodes.items()} == {n: version for n in nodes}
    assert all(v["ready"] for v in nodes.values())
