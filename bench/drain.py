"""Drain: one worker with 200 pods of 20 Deployments under PodDisruptionBudgets, upgrader's
drain against ``kubectl drain --ignore-daemonsets --delete-emptydir-data``, same run.

Owns :func:`run` and the lab spec (:func:`drain_spec`). Every measurement gets a fresh lab
(the drained pods do not come back), checked before (the worker holds the expected pods)
and after (nothing but DaemonSet pods left on it). Each tool runs as one process, as an
operator runs it: upgrader through :mod:`bench._drain_child` (the library's
``drain_node``), kubectl as the CLI (the real client of the lab's minor). The floor printed
beside them: the longest simulated termination (grace period, capped by the lab's
``pod_termination`` delay) plus one poll interval (1 s, both tools' default).

Must not: judge the numbers, or reuse a drained lab.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._perf import (
    Lab,
    Measured,
    child_env,
    lab,
    measure,
    median,
    ratio,
    result_doc,
    rnd,
    rows_of,
    table,
)

POLL_S = 1.0  # upgrader's drain poll and kubectl's wait-for-delete interval


def drain_spec(
    deployments: int = 20, per_node: int = 10, termination: float = 3.0, workers: int = 2
) -> dict[str, Any]:
    """cp-1 and ``workers`` workers; ``deployments`` x ``workers*per_node`` replicas (the
    scheduler spreads each evenly: ``per_node`` on each worker), each under a PDB that lets
    one worker's share go at once; grace periods 1..3 s, simulated termination capped at
    ``termination``. The default: 200 pods on w-1 (and 200 on w-2, where they move)."""
    share = 100 // workers
    workloads: list[dict[str, Any]] = [
        {
            "kind": "Deployment",
            "namespace": "bench",
            "name": f"app-{i:02d}",
            "replicas": workers * per_node,
            "pdb": {"maxUnavailable": f"{share}%"},
            "grace_period": 1 + i % 3,
        }
        for i in range(deployments)
    ]
    workloads.append({"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"})
    nodes = [{"name": "cp-1", "role": "control-plane"}]
    nodes += [{"name": f"w-{i}", "role": "worker"} for i in range(1, workers + 1)]
    return {
        "nodes": nodes,
        "workloads": workloads,
        "delays": {"pod_termination": termination, "kubelet_ready": 0.5},
    }


def floor_seconds(spec: dict[str, Any]) -> float:
    term = float(spec["delays"]["pod_termination"])
    graces = [int(w.get("grace_period", 1)) for w in spec["workloads"] if w["kind"] == "Deployment"]
    return min(term, max(graces, default=0)) + POLL_S


def _evictable_on(lab_: Lab, node: str) -> int:
    """Pods on ``node`` that a drain must remove (not DaemonSet-owned, not mirror)."""
    m = measure(
        [
            "kubectl",
            "--kubeconfig",
            str(lab_.kubeconfig),
            "get",
            "pods",
            "-A",
            "-o",
            "json",
            "--field-selector",
            f"spec.nodeName={node}",
        ],
    ).check()
    count = 0
    for pod in json.loads(m.stdout).get("items", []):
        owners = pod["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "DaemonSet" for o in owners):
            continue
        if "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {}):
            continue
        count += 1
    return count


def _upgrader(lab_: Lab, node: str) -> tuple[Measured, dict[str, Any]]:
    m = measure([sys.executable, "-m", "bench._drain_child", str(lab_.kubeconfig), node]).check()
    return m, json.loads(m.stdout.strip().splitlines()[-1])


def _kubectl(lab_: Lab, node: str) -> tuple[Measured, dict[str, Any]]:
    m = measure(
        [
            "kubectl",
            "--kubeconfig",
            str(lab_.kubeconfig),
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=600s",
        ],
        env=child_env(),
    ).check()
    throttled = sum(1 for ln in m.stderr.splitlines() if "client-side throttling" in ln)
    evicted = sum(1 for ln in m.stdout.splitlines() if ln.endswith(" evicted"))
    return m, {"evicted": evicted, "throttle_messages": throttled}


def run(
    work: Path,
    reps: int = 3,
    spec: dict[str, Any] | None = None,
    node: str = "w-1",
    tools: tuple[str, ...] = ("upgrader", "kubectl"),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    spec = spec or drain_spec()
    missing = None
    if "kubectl" in tools and shutil.which("kubectl") is None:
        tools = tuple(t for t in tools if t != "kubectl")
        missing = "kubectl is not on PATH: measured upgrader only"
        log(f"drain: {missing}")
    runners = {"upgrader": _upgrader, "kubectl": _kubectl}
    samples: dict[str, list[tuple[Measured, dict[str, Any]]]] = {t: [] for t in tools}
    pods = 0
    kubectl_version = None
    for rep in range(reps):
        order = list(tools[rep % len(tools) :] + tools[: rep % len(tools)])
        for tool in order:
            with lab(work, f"drain-{tool}-{rep}", spec) as lab_:
                pods = _evictable_on(lab_, node)
                if kubectl_version is None and "kubectl" in tools:
                    v = measure(
                        ["kubectl", "--kubeconfig", str(lab_.kubeconfig), "version", "-o", "json"]
                    )
                    if v.returncode == 0:
                        kubectl_version = json.loads(v.stdout)["clientVersion"]["gitVersion"]
                m, info = runners[tool](lab_, node)
                left = _evictable_on(lab_, node)
                if left:
                    raise RuntimeError(f"{tool} drain left {left} pod(s) on {node}")
                samples[tool].append((m, info))
                log(f"drain rep {rep + 1}: {tool} {m.seconds:.2f}s ({pods} pods)")
    floor = floor_seconds(spec)
    base = median([m.seconds for m, _ in samples.get("upgrader", [])])
    rows = []
    for tool, got in samples.items():
        med = median([m.seconds for m, _ in got])
        row: dict[str, Any] = {
            "tool": tool,
            "pods": pods,
            "reps": len(got),
            "median_s": rnd(med, 3),
            "vs_upgrader": rnd(ratio(med, base)),
            "floor_s": rnd(floor, 2),
            "vs_floor": rnd(ratio(med, floor)),
            "samples_s": [round(m.seconds, 3) for m, _ in got],
        }
        if tool == "upgrader":
            row["library_call_median_s"] = rnd(median([float(i["seconds"]) for _, i in got]), 3)
        if tool == "kubectl":
            row["client_throttle_messages"] = [int(i["throttle_messages"]) for _, i in got]
            row["version"] = kubectl_version
        rows.append(row)
    params = {
        "lab": "cp-1, w-1, w-2; 20 Deployments x 20 replicas (10 per worker), PDB "
        "maxUnavailable 50% each, grace periods 1-3 s, pod_termination 3 s; drain w-1",
        "reps": reps,
        "floor": "longest simulated termination + one 1 s poll",
        "kubectl": missing
        or f"{kubectl_version} drain {node} --ignore-daemonsets --delete-emptydir-data",
    }
    return result_doc("drain", params, rows)


def render(doc: dict[str, Any]) -> str:
    head = ("tool", "pods", "reps", "median s", "x upgrader", "floor s", "x floor")
    keys = ("tool", "pods", "reps", "median_s", "vs_upgrader", "floor_s", "vs_floor")
    return table(head, rows_of(doc, keys))
