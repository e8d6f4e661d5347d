"""The cost of one state save, at 10 and 200 nodes: the whole state rewritten atomically
(what every transition cost before issue 16, and what a compaction costs now) against the
journal line a running run's transition appends (``upgrader.state.StateFile``).

Owns :func:`run_state` (a run of ``nodes`` workers with the default playbook's worker steps
plus a download step, as ``upgrader.state.new_run`` makes it), :func:`run` and
:func:`render`. Both ways walk the same transitions a run records (``start_step`` then
``finish_step`` with a message, step after step) in the same process, on the same file
system (the work directory's), fsync included: "full" calls ``upgrader.state.save`` (JSON
of the whole state, temp file, fsync, rename, fsync of the directory) after each one,
"journal" calls ``StateFile.save`` (one JSON line of what changed, appended and fsynced;
its first save, the compaction at the run's start, is not counted). Per save: the median
of ``reps`` rounds of ``saves`` saves each. Also measured: ``load()`` of the state file
alone and of the state file plus the journal of those saves (what ``status`` and a resume
read), and a whole run's save time (2 saves per step).

Must not: start a lab, touch the network, or judge the numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._perf import median, ratio, result_doc, rnd, table

SIZES = (10, 200)
SAVES = 200
TARGET = "v1.28.4"
# the default playbook's worker steps, and the prestage download
STEP_NAMES = (
    "download-packages",
    "kubeadm-package",
    "kubeadm-upgrade-node",
    "drain",
    "kubelet-kubectl-packages",
    "verify-binaries",
    "restart-kubelet",
    "wait-ready",
    "uncordon",
)


@dataclass(frozen=True)
class _Step:
    id: str
    node: str
    phase: str
    name: str


def run_state(nodes: int) -> Any:
    """A fresh run of ``nodes`` workers, every step pending."""
    from upgrader import state as st

    steps = [
        _Step(
            f"{TARGET}/w-{n}/{'prestage' if name == 'download-packages' else 'worker'}/{name}",
            f"w-{n}",
            "prestage" if name == "download-packages" else "worker",
            name,
        )
        for n in range(1, nodes + 1)
        for name in STEP_NAMES
    ]
    return st.new_run(
        cluster="bench",
        inventory="/bench/inventory.yaml",
        fingerprint="0" * 64,
        target=TARGET,
        hops=[TARGET],
        strategy="per-hop",
        steps=steps,
        transcripts="/bench/.upgrader/bench.state.json.d/run",
        run_id="0123456789ab",
        versions_before={f"w-{n}": {"kubelet": "v1.27.8"} for n in range(1, nodes + 1)},
    )


def _transitions(state: Any, count: int) -> list[Any]:
    """``count`` successive states: each step started, then finished with a message."""
    from upgrader import state as st

    out = []
    ids = list(state.steps)
    for i in range(count):
        sid = ids[(i // 2) % len(ids)]
        if i % 2 == 0:
            state = st.start_step(state, sid)
        else:
            state = st.finish_step(state, sid, message=f"done in {i / 10:.1f}s", exit_code=0)
        out.append(state)
    return out


def _fs_type(path: Path) -> str:
    r = subprocess.run(
        ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=False
    )
    lines = r.stdout.split()
    return lines[-1] if r.returncode == 0 and lines else "unknown"


def _time_saves(save: Callable[[Any], None], states: list[Any]) -> float:
    t0 = time.perf_counter()
    for s in states:
        save(s)
    return (time.perf_counter() - t0) / len(states)


def run(
    work: Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    saves: int = SAVES,
    reps: int = 3,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    from upgrader import state as st

    rows: list[dict[str, Any]] = []
    d = work / "state-save"
    for nodes in sizes:
        base = run_state(nodes)
        states = _transitions(base, saves)
        full: list[float] = []
        journal: list[float] = []
        load_full: list[float] = []
        load_journal: list[float] = []
        line_bytes = 0
        for rep in range(reps):
            shutil.rmtree(d, ignore_errors=True)
            path = d / "bench.state.json"
            st.save(path, base)
            full.append(_time_saves(lambda s, p=path: st.save(p, s), states))
            t0 = time.perf_counter()
            assert st.load(path) == states[-1]
            load_full.append(time.perf_counter() - t0)

            shutil.rmtree(d, ignore_errors=True)
            sf = st.StateFile(path)
            sf.save(base)  # the run's start: a compaction, not counted
            journal.append(_time_saves(sf.save, states))
            line_bytes = os.path.getsize(st.journal_path(path)) // len(states)
            t0 = time.perf_counter()
            assert st.load(path) == states[-1]
            load_journal.append(time.perf_counter() - t0)
            log(
                f"state-save: {nodes} nodes, round {rep + 1}/{reps}: full "
                f"{full[-1] * 1e3:.2f} ms, journal {journal[-1] * 1e3:.3f} ms per save"
            )
        state_bytes = os.path.getsize(d / "bench.state.json")
        shutil.rmtree(d, ignore_errors=True)
        full_ms = (median(full) or 0) * 1e3
        journal_ms = (median(journal) or 0) * 1e3
        run_saves = 2 * len(base.steps)
        rows.append(
            {
                "nodes": nodes,
                "steps": len(base.steps),
                "saves": saves,
                "reps": reps,
                "full_ms_per_save": rnd(full_ms, 3),
                "journal_ms_per_save": rnd(journal_ms, 3),
                "full_over_journal": rnd(ratio(full_ms, journal_ms), 1),
                "full_samples_ms": [rnd(x * 1e3, 3) for x in full],
                "journal_samples_ms": [rnd(x * 1e3, 3) for x in journal],
                "state_bytes": state_bytes,
                "journal_bytes_per_line": line_bytes,
                "run_saves": run_saves,
                "run_full_s": rnd(full_ms * run_saves / 1e3, 2),
                "run_journal_s": rnd(journal_ms * run_saves / 1e3, 2),
                "load_ms_state_only": rnd((median(load_full) or 0) * 1e3, 2),
                f"load_ms_with_{saves}_lines": rnd((median(load_journal) or 0) * 1e3, 2),
            }
        )
    return result_doc(
        "state-save",
        {
            "steps_per_node": len(STEP_NAMES),
            "transitions": "start_step, finish_step (with a message), step after step",
            "full": "upgrader.state.save: whole state, temp file, fsync, rename, dir fsync",
            "journal": "StateFile.save: one line of what changed, O_APPEND, fsync",
            "filesystem": _fs_type(work),
        },
        rows,
    )


def render(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    saves = rows[0]["saves"] if rows else SAVES
    return table(
        (
            "nodes",
            "steps",
            "state bytes",
            "full ms/save",
            "journal ms/save",
            "full / journal",
            "line bytes",
            "run: full s",
            "run: journal s",
            "load ms (file)",
            f"load ms (+{saves} lines)",
        ),
        [
            (
                r["nodes"],
                r["steps"],
                r["state_bytes"],
                r["full_ms_per_save"],
                r["journal_ms_per_save"],
                r["full_over_journal"],
                r["journal_bytes_per_line"],
                r["run_full_s"],
                r["run_journal_s"],
                r["load_ms_state_only"],
                r[f"load_ms_with_{saves}_lines"],
            )
            for r in rows
        ],
    )


if __name__ == "__main__":  # pragma: no cover - ``python -m bench.run state-save`` is the way
    sys.exit("run it with: python -m bench.run state-save")
