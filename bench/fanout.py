"""Fan-out: the fact round trip on labs of 1, 10, 50 and 200 nodes, upgrader against
ansible-core and pyinfra, in the same run.

Owns :func:`run`. Per lab size, each repetition runs (in a rotating order, so no tool
always goes first): ``upgrader facts`` (the fact script over SSH plus the API reads),
``upgrader plan`` (facts plus the preflight reads and the plan), ``ansible all -m raw``
and ``pyinfra exec`` with the very command upgrader sends (built from
:func:`upgrader.core.probes.fact_script` exactly as :mod:`upgrader.gather` builds it), all
with N parallel connections and the lab's key and known_hosts, strict host keys. Every
peer run is checked: all N hosts must have printed every fact section. Reports medians,
the ratio of each peer to ``upgrader facts``, each tool's time against its own time on
a one-node lab, and beside each row the lab's own CPU per node (what the simulation cost:
:mod:`upgrader_lab.cost`).

Must not: count a run whose output is incomplete, or reuse SSH connections across runs
(ansible's ControlPersist is off; upgrader and pyinfra open fresh ones per process).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import _peers
from bench._perf import (
    TARGET,
    Lab,
    Measured,
    flag_spec,
    lab,
    measure,
    median,
    ratio,
    result_doc,
    rnd,
    table,
    upgrader_argv,
)
from upgrader.core import parsers, probes
from upgrader_lab import cost

TOOLS = ("upgrader facts", "upgrader plan", "ansible raw", "pyinfra exec")
DEFAULT_SIZES = (1, 10, 50, 200)


def fact_command(package_manager: str = "apt") -> str:
    """The command upgrader sends to every node (as :func:`upgrader.gather._probe_node`)."""
    return "sh -c " + shlex.quote(probes.fact_script(package_manager))


def default_reps(size: int) -> int:
    return 5 if size <= 10 else 3


def plan_reps(size: int) -> int:
    """``upgrader plan`` is ``facts`` plus the preflight reads, repeated like every tool
    (the issue asks for medians of repeated runs at every size)."""
    return default_reps(size)


def _check_hosts(tool: str, m: Measured, outputs: dict[str, str], lab_: Lab) -> None:
    want = len(probes.fact_probes("apt"))
    ok = {h for h, text in outputs.items() if len(parsers.split_sections(text)) >= want}
    missing = sorted(set(lab_.nodes) - ok)
    if missing:
        dump = lab_.dir.parent / f"{tool}-failed.out"
        dump.write_text(m.stdout + "\n----- stderr\n" + m.stderr)
        raise RuntimeError(
            f"{tool}: {len(missing)} node(s) without complete facts: {missing[:5]} (see {dump})"
        )


def _runners(lab_: Lab, work: Path, peers: bool) -> dict[str, Callable[[], Measured]]:
    n = len(lab_.nodes)
    workers = str(min(512, max(1, n)))
    inv = str(lab_.inventory)
    out: dict[str, Callable[[], Measured]] = {
        "upgrader facts": lambda: measure(
            upgrader_argv(
                "facts", "-i", inv, "-o", str(work / "facts.json"), "--max-workers", workers
            )
        ).check(),
        "upgrader plan": lambda: measure(
            upgrader_argv("plan", "-i", inv, "--to", TARGET, "--max-workers", workers)
        ).check((0, 3)),
    }
    if not peers:
        return out
    command = fact_command()
    ini = _peers.ansible_inventory(lab_, work / "ansible.ini")
    pyinv = _peers.pyinfra_inventory(lab_, work / "pyinfra_inventory.py")

    def ansible() -> Measured:
        argv, env = _peers.ansible_run(ini, command, n, work / "ansible-home")
        m = measure(argv, env=env, cwd=work).check()
        _check_hosts("ansible", m, _peers.ansible_outputs(m.stdout), lab_)
        return m

    def pyinfra() -> Measured:
        argv, env = _peers.pyinfra_run(pyinv, command, n)
        m = measure(argv, env=env, cwd=work).check()
        _check_hosts("pyinfra", m, _peers.pyinfra_outputs(m.stdout + "\n" + m.stderr), lab_)
        return m

    out["ansible raw"] = ansible
    out["pyinfra exec"] = pyinfra
    return out


def run(
    work: Path,
    sizes: Sequence[int] = DEFAULT_SIZES,
    reps: Callable[[int], int] = default_reps,
    peers: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    versions = _peers.ensure_peers(log) if peers else {}
    samples: dict[int, dict[str, list[Measured]]] = {}
    lab_cpu: dict[int, dict[str, list[float]]] = {}  # the lab's own CPU seconds per run
    for size in sizes:
        spec = flag_spec(1, size - 1)
        with lab(work, f"fanout-{size}", spec) as lab_:
            runners = _runners(lab_, work, peers)
            names = list(runners)
            got: dict[str, list[Measured]] = {name: [] for name in names}
            spent: dict[str, list[float]] = {name: [] for name in names}
            for rep in range(reps(size)):
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    if name == "upgrader plan" and rep >= plan_reps(size):
                        continue
                    before = cost.cpu_seconds(lab_.dir)
                    m = runners[name]()
                    got[name].append(m)
                    spent[name].append(cost.cpu_since(lab_.dir, before))
                    log(f"fanout n={size} rep {rep + 1}: {name} {m.seconds:.2f}s")
            samples[size] = got
            lab_cpu[size] = spent
    rows: list[dict[str, Any]] = []
    single: dict[str, float | None] = {}
    if 1 in samples:
        single = {t: median([m.seconds for m in ms]) for t, ms in samples[1].items()}
    for size, got in samples.items():
        base = median([m.seconds for m in got["upgrader facts"]])
        for tool, ms in got.items():
            med = median([m.seconds for m in ms])
            rows.append(
                {
                    "nodes": size,
                    "tool": tool,
                    "reps": len(ms),
                    "median_s": rnd(med, 3),
                    "min_s": rnd(min(m.seconds for m in ms), 3),
                    "max_s": rnd(max(m.seconds for m in ms), 3),
                    "vs_upgrader_facts": rnd(ratio(med, base)),
                    "vs_one_node": rnd(ratio(med, single.get(tool))),
                    "per_node_ms": rnd(1000 * med / size if med is not None else None, 1),
                    "peak_rss_mib": rnd(median([m.rss_mib for m in ms]), 1),
                    "lab_cpu_ms_per_node": rnd(_per_node_ms(lab_cpu[size][tool], size), 1),
                    "samples_s": [round(m.seconds, 3) for m in ms],
                }
            )
    params = {
        "sizes": list(sizes),
        "reps": {str(s): reps(s) for s in sizes},
        "plan_reps": {str(s): min(reps(s), plan_reps(s)) for s in sizes},
        "command": "the fact script (upgrader.core.probes.fact_script('apt'), "
        f"{len(fact_command())} bytes) as `sh -c '<script>'`",
        "parallelism": "N (upgrader --max-workers N, ansible -f N, pyinfra --parallel N)",
        "peers": versions,
        "notes": "peak_rss_mib is the main process only (ansible forks workers); "
        "lab_cpu_ms_per_node is the lab's own CPU (sshd, sessions, node wrapper, simulated and "
        "real node tools, API server) per run and node, median (upgrader_lab.cost)",
    }
    return result_doc("fanout", params, rows)


def _per_node_ms(seconds: list[float], size: int) -> float | None:
    med = median(seconds)
    return 1000 * med / size if med is not None else None


def render(doc: dict[str, Any]) -> str:
    rows = [
        (
            r["nodes"],
            r["tool"],
            r["reps"],
            r["median_s"],
            r["vs_upgrader_facts"],
            r["vs_one_node"],
            r["per_node_ms"],
            r.get("lab_cpu_ms_per_node"),
        )
        for r in doc["rows"]
    ]
    head = (
        "nodes",
        "tool",
        "reps",
        "median s",
        "x upgrader facts",
        "x own 1-node time",
        "ms/node",
        "lab CPU ms/node",
    )
    return table(head, rows)
