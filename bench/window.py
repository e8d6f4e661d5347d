"""Drained window: per worker, the seconds from cordon to uncordon (the run's events),
against the floor of what must happen while the node is drained (drain + kubelet restart
+ readiness); with pre-staging and without, when upgrader offers pre-staging.

Owns :func:`run`. It reads the runs of :mod:`bench.overhead` (same lab, same simulated
durations) when given them, else makes its own. The floor per worker: the simulated pod
termination (its drain evicts pods), two node commands (``systemctl daemon-reload``,
``systemctl restart kubelet``) at the simulated ``command`` time, and ``kubelet_ready``.
The kubelet/kubectl package step also sits inside the window in the default playbook;
pre-staging (downloading those packages before the cordon; the lab charges ``download``
seconds per package fetched) is what shrinks it.

Must not: judge the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import overhead
from bench._perf import measure, median, ratio, result_doc, rnd, table, upgrader_argv

IN_WINDOW = ("drain", "kubelet-kubectl-packages", "restart-kubelet", "wait-ready", "uncordon")


def prestage_switch() -> tuple[str, bool] | None:
    """How this build's ``apply`` turns pre-staging on or off: (``--no-prestage``, True)
    when it is on by default, (``--prestage``-like flag, False) when it is opt-in, None
    when there is none."""
    text = measure(upgrader_argv("apply", "--help")).stdout
    words = [w.rstrip(",") for w in text.replace("│", " ").split() if w.startswith("--")]
    for word in words:
        if word.startswith("--no-") and "stag" in word:
            return word, True
    for word in words:
        if "stag" in word:
            return word, False
    return None


def floor_seconds(delays: dict[str, float]) -> float:
    return (
        delays.get("pod_termination", 0.0)
        + 2 * delays.get("command", 0.0)
        + delays.get("kubelet_ready", 0.0)
    )


def _per_worker(runs: list[overhead.ApplyRun]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        workers = {
            e["node"]
            for e in r.events
            if e["event"] == "node-started" and e.get("role") == "worker"
        }
        for node, seconds in r.windows().items():
            if node not in workers:
                continue
            slot = out.setdefault(node, {"window": []})
            slot["window"].append(seconds)
            for e in r.finished_steps():
                if e.get("node") == node and e.get("name") in IN_WINDOW:
                    slot.setdefault(str(e["name"]), []).append(float(e.get("duration") or 0.0))
    return out


def run(
    work: Path,
    runs: list[overhead.ApplyRun] | None = None,
    workers: int = 3,
    reps: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``runs``: applies made with the build's default (as :func:`bench.overhead.run`
    makes them); the other setting of pre-staging is run here, as many times."""
    switch = prestage_switch()
    if runs is None:
        runs = []
        for rep in range(reps):
            runs.append(overhead.apply_once(work, f"window-{rep}", 1, workers, overhead.DELAYS))
            log(f"window (default) rep {rep + 1}: run {runs[-1].run_s:.2f}s")
    if switch is None:
        configs = [("without pre-staging", runs)]
        note = "not available in this build: measured without only"
    else:
        flag, default_on = switch
        other = []
        for rep in range(len(runs)):
            other.append(
                overhead.apply_once(
                    work, f"window-other-{rep}", 1, workers, overhead.DELAYS, (flag,)
                )
            )
            log(f"window with {flag} rep {rep + 1}: run {other[-1].run_s:.2f}s")
        if default_on:
            configs = [("with pre-staging (default)", runs), (f"without ({flag})", other)]
        else:
            configs = [("without pre-staging (default)", runs), (f"with ({flag})", other)]
        note = f"{'on' if default_on else 'off'} by default; the other runs use {flag}"
    floor = floor_seconds(overhead.DELAYS)
    rows = []
    for label, rs in configs:
        for node, slot in sorted(_per_worker(rs).items()):
            med = median(slot["window"])
            rows.append(
                {
                    "config": label,
                    "worker": node,
                    "reps": len(slot["window"]),
                    "window_median_s": rnd(med, 3),
                    "floor_s": rnd(floor, 3),
                    "vs_floor": rnd(ratio(med, floor)),
                    "over_floor_s": rnd(med - floor if med is not None else None, 3),
                    "steps_median_s": {
                        k: rnd(median(v), 3) for k, v in slot.items() if k != "window"
                    },
                }
            )
    params = {
        "lab": f"1 control plane + {workers} workers (as the overhead benchmark)",
        "delays": overhead.DELAYS,
        "floor": "pod_termination + 2 x command (daemon-reload, restart) + kubelet_ready",
        "prestaging": note,
    }
    return result_doc("window", params, rows)


def render(doc: dict[str, Any]) -> str:
    head = ("config", "worker", "reps", "window s", "floor s", "x floor", *IN_WINDOW)
    rows = [
        (
            r["config"],
            r["worker"],
            r["reps"],
            r["window_median_s"],
            r["floor_s"],
            r["vs_floor"],
            *(r["steps_median_s"].get(k) for k in IN_WINDOW),
        )
        for r in doc["rows"]
    ]
    note = f"pre-staging: {doc['params']['prestaging']}"
    return table(head, rows) + "\n\n" + note
