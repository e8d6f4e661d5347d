"""Orchestration overhead: ``upgrader apply`` on a lab whose steps take known, simulated
times, against the sum of those times on the critical path; and with every simulated time
at zero (the pure overhead per node).

Owns :func:`apply_once` (a fresh lab, one ``apply --events``, what the events and the
nodes' ``calls.jsonl`` say) and :func:`run`. The floor of a run (``injected_s``) is the
simulated work the lab charged on the critical path: on the nodes, the union of the time
the simulated tools spent inside their calls (``command`` per invocation,
``download`` per repository refresh and package fetched, ``package_install`` per package;
calls that overlap, as the prestage phase's on every node at once, count once), and on the
API side ``kubelet_ready`` per kubelet restart and ``pod_termination`` per drain that
evicted pods (workloads use a grace period above it). Workers go one at a time
(``--max-unavailable 1``). Overhead = run time - floor; it is split into: inside shell
steps (SSH round trips and the simulated tools' own start-up, what a real node would spend
anyway), inside API steps (polling granularity), between nodes (the health gate before
each node) and between steps (the done-checks, state writes, events).

Must not: assert anything about the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._perf import (
    TARGET,
    Lab,
    flag_spec,
    lab,
    measure,
    median,
    parse_ts,
    read_events,
    result_doc,
    rnd,
    table,
    union_seconds,
    upgrader_argv,
)

DELAYS = {
    "command": 0.05,
    "package_install": 0.3,
    "kubelet_ready": 1.0,
    "pod_termination": 0.5,
    "download": 0.3,
}
ZERO = dict.fromkeys(DELAYS, 0.0)
API_STEPS = ("cordon", "drain", "uncordon", "wait-ready", "wait-control-plane")
_EVICTED = re.compile(r"(\d+) pod\(s\) (?:evicted|deleted)")


def workloads(workers: int, pdb_max_unavailable: int | str = 2) -> list[dict[str, Any]]:
    """One pod per worker of a Deployment under a PDB, plus a DaemonSet; grace periods
    (2 s) above the simulated termination time. The PDB allows two disruptions: a drained
    worker's pod lands on the next worker, whose drain then evicts two at once (with one
    allowed, the second eviction waits out the 5 s retry after a 429, kubectl's and
    upgrader's alike: a policy wait, not overhead)."""
    return [
        {
            "kind": "Deployment",
            "namespace": "default",
            "name": "web",
            "replicas": max(1, workers),
            "pdb": {"maxUnavailable": pdb_max_unavailable},
            "grace_period": 2,
        },
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
    ]


@dataclass
class ApplyRun:
    """One measured apply."""

    nodes: int
    delays: dict[str, float]
    wall_s: float
    rss_mib: float
    events: list[dict[str, Any]]
    calls: dict[str, list[dict[str, Any]]]
    extra_args: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    # ---- derived
    def _ts(self, kind: str) -> float | None:
        for e in self.events:
            if e["event"] == kind:
                return parse_ts(e["ts"])
        return None

    @property
    def run_s(self) -> float:
        start, end = self._ts("run-started"), self._ts("run-finished")
        return (end - start) if start is not None and end is not None else self.wall_s

    def run_calls(self) -> list[dict[str, Any]]:
        start, end = self._ts("run-started"), self._ts("run-finished")
        out = []
        for rows in self.calls.values():
            for r in rows:
                if start is None or end is None or start - 0.5 <= float(r["start"]) <= end + 0.5:
                    out.append(r)
        return out

    def finished_steps(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "step-finished"]

    def windows(self) -> dict[str, float]:
        """Per node: seconds from node-cordoned to node-uncordoned."""
        cordoned: dict[str, float] = {}
        out: dict[str, float] = {}
        for e in self.events:
            if e["event"] == "node-cordoned":
                cordoned[e["node"]] = parse_ts(e["ts"])
            elif e["event"] == "node-uncordoned" and e["node"] in cordoned:
                out[e["node"]] = parse_ts(e["ts"]) - cordoned.pop(e["node"])
        return out

    def injected(self) -> dict[str, float]:
        """The simulated seconds the lab charged on the critical path of the run.

        Node side: the union of the run's node tool invocations ``[start, end]``
        (``calls.jsonl``; a tool records them around its simulated delays, after its own
        start-up), so invocations that overlap (the prestage phase runs on every node at
        once) count once. API side: ``kubelet_ready`` per kubelet restart and
        ``pod_termination`` per drain that evicted pods."""
        d = self.delays
        calls = self.run_calls()
        restarts = sum(
            1
            for r in calls
            if [str(a) for a in r.get("argv") or []][:2] == ["systemctl", "restart"]
        )
        drains = 0
        for e in self.finished_steps():
            if e.get("name") == "drain":
                m = _EVICTED.search(str(e.get("message") or ""))
                if m and int(m.group(1)) > 0:
                    drains += 1
        node_side = union_seconds(
            (float(r["start"]), float(r.get("end") or r["start"])) for r in calls
        )
        return {
            "node_side": node_side,
            "kubelet_ready": d.get("kubelet_ready", 0.0) * restarts,
            "pod_termination": d.get("pod_termination", 0.0) * drains,
            "commands": float(len(calls)),
        }

    def _step_intervals(self, api: bool | None) -> list[tuple[float, float]]:
        out = []
        for e in self.finished_steps():
            if api is not None and (e.get("kind") in API_STEPS) != api:
                continue
            end = parse_ts(e["ts"])
            out.append((end - float(e.get("duration") or 0.0), end))
        return out

    def breakdown(self) -> dict[str, float]:
        inj = self.injected()
        shell = union_seconds(self._step_intervals(api=False))
        api = union_seconds(self._step_intervals(api=True))
        steps = union_seconds(self._step_intervals(api=None))
        # before each node: the health gate (before_batch) and the batch set-up, from the
        # event before it; nodes started together (the prestage phase) share one gap
        before: list[tuple[float, float]] = []
        prev: float | None = None
        for e in self.events:
            t = parse_ts(e["ts"])
            if e["event"] == "node-started" and prev is not None:
                before.append((prev, t))
            if e["event"] != "node-started":
                prev = t
        gaps = union_seconds(before)
        node_side = inj["node_side"]
        api_side = inj["kubelet_ready"] + inj["pod_termination"]
        floor = node_side + api_side
        return {
            "run_s": self.run_s,
            "injected_s": floor,
            "node_side_s": node_side,
            "api_side_s": api_side,
            "overhead_s": self.run_s - floor,
            "in_shell_steps_s": max(0.0, shell - node_side),
            "in_api_steps_s": max(0.0, api - api_side),
            "between_nodes_s": gaps,
            "between_steps_s": self.run_s - steps - gaps,
            "commands": inj["commands"],
        }


def apply_once(
    work: Path,
    name: str,
    control_planes: int,
    workers: int,
    delays: Mapping[str, float],
    extra_args: tuple[str, ...] = (),
    spec_extra: Mapping[str, Any] | None = None,
    pdb_max_unavailable: int | str = 2,
) -> ApplyRun:
    """A fresh lab, ``upgrader apply --to TARGET --yes --events``, its events and calls."""
    spec = flag_spec(
        control_planes,
        workers,
        workloads=workloads(workers, pdb_max_unavailable),
        delays=dict(delays),
        **dict(spec_extra or {}),
    )
    with lab(work, name, spec) as lab_:
        events_path = work / f"{name}.events.jsonl"
        events_path.unlink(missing_ok=True)
        lab_.clear_calls()
        m = measure(
            upgrader_argv(
                "apply",
                "-i",
                str(lab_.inventory),
                "--to",
                TARGET,
                "--yes",
                "--quiet",
                "--events",
                str(events_path),
                *extra_args,
            ),
            timeout=1800,
        ).check()
        events = read_events(events_path)
        events_path.unlink(missing_ok=True)
        _check_converged(lab_, events)
        return ApplyRun(
            nodes=len(lab_.nodes),
            delays=dict(delays),
            wall_s=m.seconds,
            rss_mib=m.rss_mib,
            events=events,
            calls=lab_.calls(),
            extra_args=extra_args,
        )


def _check_converged(lab_: Lab, events: list[dict[str, Any]]) -> None:
    finished = [e for e in events if e["event"] == "run-finished"]
    if not finished or finished[-1].get("ok") is False:
        raise RuntimeError(f"apply on {lab_.dir.name} did not finish: {finished[-1:]}")


def summarize(runs: list[ApplyRun]) -> dict[str, Any]:
    """Medians over repetitions of one configuration."""
    b = [r.breakdown() for r in runs]
    n = runs[0].nodes

    def med(key: str) -> float | None:
        return median([x[key] for x in b])

    overhead = med("overhead_s")
    floor = med("injected_s")
    return {
        "nodes": n,
        "reps": len(runs),
        "delays": runs[0].delays,
        "wall_s": rnd(median([r.wall_s for r in runs]), 3),
        "run_s": rnd(med("run_s"), 3),
        "injected_s": rnd(floor, 3),
        "overhead_s": rnd(overhead, 3),
        "overhead_per_node_s": rnd(overhead / n if overhead is not None else None, 3),
        "overhead_pct": rnd(
            100 * overhead / floor
            if overhead is not None and floor and any(runs[0].delays.values())
            else None,
            1,
        ),
        "in_shell_steps_s": rnd(med("in_shell_steps_s"), 3),
        "in_api_steps_s": rnd(med("in_api_steps_s"), 3),
        "between_nodes_s": rnd(med("between_nodes_s"), 3),
        "between_steps_s": rnd(med("between_steps_s"), 3),
        "commands_per_node": rnd((med("commands") or 0) / n, 1),
        "before_run_s": rnd(median([r.wall_s - r.run_s for r in runs]), 3),
        "samples_run_s": [round(x["run_s"], 3) for x in b],
        "steps": step_medians(runs),
    }


def step_medians(runs: list[ApplyRun]) -> dict[str, float | None]:
    by: dict[str, list[float]] = {}
    for r in runs:
        for e in r.finished_steps():
            by.setdefault(str(e.get("name")), []).append(float(e.get("duration") or 0.0))
    return {k: rnd(median(v), 3) for k, v in sorted(by.items())}


def run(
    work: Path,
    workers: int = 3,
    reps: int = 3,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[ApplyRun]]:
    """Both configurations; returns the result document and the runs with delays (the
    drained-window benchmark reads their events)."""
    rows = []
    delayed: list[ApplyRun] = []
    for label, delays in (("simulated durations", DELAYS), ("zero durations", ZERO)):
        runs = []
        for rep in range(reps):
            r = apply_once(work, f"overhead-{rep}", 1, workers, delays)
            log(f"overhead {label} rep {rep + 1}: run {r.run_s:.2f}s, wall {r.wall_s:.2f}s")
            runs.append(r)
        if delays is DELAYS:
            delayed = runs
        rows.append({"config": label, **summarize(runs)})
    params = {
        "lab": f"1 control plane + {workers} workers, default playbook, --max-unavailable 1",
        "delays": DELAYS,
        "reps": reps,
        "floor": "union of the node tool calls' [start, end] (their simulated delays) + "
        "kubelet_ready x restarts + pod_termination x drains with pods (inside the run window)",
    }
    return result_doc("overhead", params, rows), delayed


def render(doc: dict[str, Any]) -> str:
    head = (
        "config",
        "nodes",
        "run s",
        "floor s",
        "overhead s",
        "per node s",
        "overhead %",
        "in shell steps",
        "in API steps",
        "between nodes",
        "between steps",
        "before run s",
    )
    rows = [
        (
            r["config"],
            r["nodes"],
            r["run_s"],
            r["injected_s"],
            r["overhead_s"],
            r["overhead_per_node_s"],
            r["overhead_pct"],
            r["in_shell_steps_s"],
            r["in_api_steps_s"],
            r["between_nodes_s"],
            r["between_steps_s"],
            r["before_run_s"],
        )
        for r in doc["rows"]
    ]
    steps = sorted({k for r in doc["rows"] for k in r["steps"]})
    step_rows = [(s, *(r["steps"].get(s) for r in doc["rows"])) for s in steps]
    return (
        table(head, rows)
        + "\n\nmedian step durations (s):\n\n"
        + table(("step", *(r["config"] for r in doc["rows"])), step_rows)
    )
