"""Memory and scale: peak RSS of ``upgrader plan`` and ``upgrader apply`` at 50 and 200
nodes, and an ``apply`` on a 100-node lab that must complete.

Owns :func:`run`. Peak RSS is the process's own maximum resident set (``ru_maxrss`` from
``wait4``; upgrader starts no child processes). The labs run their simulated tools on this
machine's two cores, which caps how fast a lab of hundreds of nodes can be upgraded
(about 1.5 CPU-seconds of lab per node), so ``apply`` at 50 and 200 nodes starts from a
lab whose control plane is already at the target: every node is gathered and checked, and
ten workers are upgraded (``--nodes``, ``--max-unavailable 10``) — the memory goes where
the node count matters (one SSH connection per node, the facts, the preflight reads, the
plan), not into the steps. The 100-node ``apply`` runs the whole upgrade (workers ten at a
time, small simulated step durations, a PDB that lets ten go) and must complete. ``plan``
RSS comes from the fan-out runs when given, else from one ``plan`` per size here.

Must not: judge the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import overhead
from bench._perf import TARGET, flag_spec, lab, measure, result_doc, rnd, table, upgrader_argv

SMALL_DELAYS = {
    "command": 0.02,
    "package_install": 0.05,
    "kubelet_ready": 0.2,
    "pod_termination": 0.1,
    "download": 0.0,
}
LIMITED_WORKERS = 10
MAX_UNAVAILABLE = "10"
PDB_MAX_UNAVAILABLE = "25%"  # ten workers drained at once must not wait out 429 retries


def _plan_rss(work: Path, size: int) -> tuple[float, float]:
    with lab(work, f"memory-plan-{size}", flag_spec(1, size - 1)) as lab_:
        m = measure(
            upgrader_argv(
                "plan", "-i", str(lab_.inventory), "--to", TARGET, "--max-workers", str(size)
            )
        ).check((0, 3))
        return m.rss_mib, m.seconds


def run(
    work: Path,
    plan_sizes: Sequence[int] = (50, 200),
    full_apply_sizes: Sequence[int] = (100,),
    limited_apply_sizes: Sequence[int] = (50, 200),
    fanout: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for size in plan_sizes:
        got = [
            r
            for r in (fanout or {}).get("rows", [])
            if r["nodes"] == size and r["tool"] == "upgrader plan"
        ]
        if got:
            rss, seconds, source = (
                got[0]["peak_rss_mib"],
                got[0]["median_s"],
                "fan-out runs (median)",
            )
        else:
            rss, seconds = _plan_rss(work, size)
            source = "one run"
        rows.append(
            {
                "command": "plan",
                "nodes": size,
                "scope": "all nodes",
                "peak_rss_mib": rnd(rss, 1),
                "seconds": rnd(seconds, 2),
                "completed": True,
                "source": source,
            }
        )
        log(f"memory plan n={size}: {rss:.1f} MiB")
    for size in sorted(set(full_apply_sizes) | set(limited_apply_sizes)):
        limited = size in limited_apply_sizes and size not in full_apply_sizes
        delays = overhead.ZERO if limited else SMALL_DELAYS
        args: tuple[str, ...] = (
            "--max-unavailable",
            MAX_UNAVAILABLE,
            "--max-workers",
            str(min(size, 512)),
        )
        scope = f"whole upgrade, --max-unavailable {MAX_UNAVAILABLE}"
        if limited:
            names = ",".join(f"w-{i}" for i in range(1, LIMITED_WORKERS + 1))
            args += ("--nodes", names)
            scope = (
                f"control plane already at {TARGET}; all nodes gathered, "
                f"{LIMITED_WORKERS} workers upgraded (--nodes)"
            )
        extra: dict[str, Any] = {}
        if limited:
            # the control plane is done (``--nodes`` refuses to run before it is): the
            # cluster and cp-1 at the target, the workers one minor behind
            old = "v1.27.8"
            nodes: list[dict[str, Any]] = [{"name": "cp-1", "role": "control-plane"}]
            nodes += [
                {"name": f"w-{i}", "role": "worker", "kubelet": old, "kubeadm": old, "kubectl": old}
                for i in range(1, size)
            ]
            extra = {"version": TARGET, "nodes": nodes}
        r = overhead.apply_once(
            work,
            f"memory-apply-{size}",
            1,
            size - 1,
            delays,
            args,
            spec_extra=extra,
            pdb_max_unavailable=PDB_MAX_UNAVAILABLE,
        )
        upgraded = len({e["node"] for e in r.events if e["event"] == "node-finished"})
        expected = LIMITED_WORKERS if limited else size
        rows.append(
            {
                "command": "apply",
                "nodes": size,
                "scope": scope,
                "delays": "small" if delays is SMALL_DELAYS else "zero",
                "peak_rss_mib": rnd(r.rss_mib, 1),
                "seconds": rnd(r.wall_s, 2),
                "run_s": rnd(r.run_s, 2),
                "nodes_upgraded": upgraded,
                "completed": upgraded == expected,
            }
        )
        log(
            f"memory apply n={size}: {r.rss_mib:.1f} MiB, {r.wall_s:.1f}s, "
            f"{upgraded} nodes upgraded"
        )
    params = {
        "rss": "ru_maxrss of the upgrader process (wait4)",
        "small_delays": SMALL_DELAYS,
        "max_unavailable": MAX_UNAVAILABLE,
    }
    per_node = _per_node(rows)
    return result_doc("memory", params, rows, per_node_kib=per_node)


def _per_node(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Marginal RSS per node between the smallest and largest size, per command."""
    out: dict[str, float | None] = {}
    for cmd in ("plan", "apply"):
        pts = sorted((r["nodes"], r["peak_rss_mib"]) for r in rows if r["command"] == cmd)
        if len(pts) >= 2 and pts[-1][0] != pts[0][0]:
            out[cmd] = rnd(1024 * (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]), 1)
        else:
            out[cmd] = None
    return out


def render(doc: dict[str, Any]) -> str:
    head = ("command", "nodes", "scope", "peak RSS MiB", "seconds", "completed")
    rows = [
        (
            r["command"],
            r["nodes"],
            r["scope"],
            r["peak_rss_mib"],
            r["seconds"],
            "yes" if r["completed"] else "no",
        )
        for r in doc["rows"]
    ]
    extra = ", ".join(
        f"{k} {v} KiB/node" for k, v in doc.get("per_node_kib", {}).items() if v is not None
    )
    return table(head, rows) + (f"\n\nmarginal RSS: {extra}" if extra else "")
