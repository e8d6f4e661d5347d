"""Plan at scale: ``upgrader plan --facts FILE --to vX`` on generated facts files of
100, 1,000 and 5,000 nodes — wall time, peak RSS, time per node and the growth exponent.

Owns :func:`facts_doc` (a generated facts document in the format of
``tests/data/facts/*.json``: 3 control planes, the rest workers, most on apt and every
tenth on dnf, every node one minor behind the target at its latest patch), :func:`run`
and :func:`render`. Every command runs as a subprocess (:func:`bench._perf.measure`), so
start-up, the facts file's parse and the output are all in the figure. The floor of the
same run is a Python start-up that reads and loads the same facts file
(``upgrader.core.model.Facts.from_dict``) and exits: ``x floor`` is how much the planning
and rendering add to what any tool would spend to read the file. The growth exponent
between two sizes is ``log(t2/t1) / log(n2/n1)`` (1.0 = linear).

Must not: start a lab, touch the network, or judge the numbers.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._perf import measure, median, result_doc, rnd, rows_of, table, upgrader_argv

TARGET = "v1.28.4"
CURRENT = "v1.27.8"  # one minor behind the target, its latest patch
CONTROL_PLANES = 3
DNF_EVERY = 10  # one node in ten on dnf (rhel), the rest apt (debian)
SIZES = (100, 1000, 5000)
MODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("brief", ()),
    ("--json", ("--json",)),
    ("--detail", ("--detail",)),
)

_FLOOR = (
    "import json, sys\n"
    "from upgrader.core.model import Facts\n"
    "Facts.from_dict(json.loads(open(sys.argv[1]).read()), source=sys.argv[1])\n"
)


def _node(name: str, role: str, dnf: bool) -> dict[str, Any]:
    plain = CURRENT.lstrip("v")
    minor = plain.rsplit(".", 1)[0]
    patch = int(plain.rsplit(".", 1)[1])
    suffix = "-150500.1.1" if dnf else "-1.1"
    repo_versions = [f"{minor}.{p}{suffix}" for p in range(max(0, patch - 2), patch + 1)]
    pkg = {"version": f"{plain}{suffix}", "held": not dnf}
    node: dict[str, Any] = {
        "name": name,
        "role": role,
        "kubelet": CURRENT,
        "kubeadm": CURRENT,
    }
    if role == "control-plane":
        node["control_plane"] = {
            "apiserver": CURRENT,
            "controller_manager": CURRENT,
            "scheduler": CURRENT,
        }
    node.update(
        {
            "ready": True,
            "unschedulable": False,
            "os_family": "rhel" if dnf else "debian",
            "kubectl": CURRENT,
        }
    )
    if dnf:
        node["package_manager"] = "dnf"
    node.update(
        {
            "repo_minor": minor,
            "repo_versions": repo_versions,
            "packages": {k: dict(pkg) for k in ("kubeadm", "kubelet", "kubectl")},
        }
    )
    return node


def facts_doc(size: int) -> dict[str, Any]:
    """A facts document of ``size`` nodes (``size`` >= 4): cp-1..cp-3, then w-1..w-(size-3)."""
    if size < CONTROL_PLANES + 1:
        raise ValueError(f"size must be at least {CONTROL_PLANES + 1}")
    nodes = [_node(f"cp-{i}", "control-plane", False) for i in range(1, CONTROL_PLANES + 1)]
    nodes += [
        _node(f"w-{i}", "worker", i % DNF_EVERY == 0) for i in range(1, size - CONTROL_PLANES + 1)
    ]
    return {"cluster": {"name": "scale", "version": CURRENT}, "nodes": nodes}


def write_facts(directory: Path, size: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"facts-{size}.json"
    path.write_text(json.dumps(facts_doc(size), indent=2))
    return path


def growth(n1: int, t1: float | None, n2: int, t2: float | None) -> float | None:
    """The exponent k of ``t ~ n**k`` between two points (1.0 = linear)."""
    if not t1 or not t2 or n1 == n2:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def _sample(argv: Sequence[str], reps: int, ok: tuple[int, ...]) -> dict[str, Any]:
    runs = [measure(argv).check(ok) for _ in range(reps)]
    return {
        "samples_s": [rnd(m.seconds, 3) for m in runs],
        "median_s": median([m.seconds for m in runs]),
        "peak_rss_mib": max(m.rss_mib for m in runs),
        "output_bytes": len(runs[-1].stdout),
    }


def run(
    work: Path,
    sizes: Sequence[int] = SIZES,
    reps: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    facts_dir = work / "plan-scale"
    rows: list[dict[str, Any]] = []
    for size in sizes:
        path = write_facts(facts_dir, size)
        floor = _sample([sys.executable, "-c", _FLOOR, str(path)], reps, (0,))
        log(f"plan-scale n={size} floor: {floor['median_s']:.2f}s {floor['peak_rss_mib']:.0f} MiB")
        for mode, extra in MODES:
            got = _sample(
                upgrader_argv("plan", "--facts", str(path), "--to", TARGET, *extra), reps, (0,)
            )
            t = got["median_s"]
            rows.append(
                {
                    "mode": mode,
                    "nodes": size,
                    "reps": reps,
                    "median_s": rnd(t, 3),
                    "samples_s": got["samples_s"],
                    "peak_rss_mib": rnd(got["peak_rss_mib"], 1),
                    "ms_per_node": rnd(1000 * t / size, 3),
                    "floor_s": rnd(floor["median_s"], 3),
                    "floor_rss_mib": rnd(floor["peak_rss_mib"], 1),
                    "x_floor": rnd(t / floor["median_s"], 2) if floor["median_s"] else None,
                    "facts_bytes": path.stat().st_size,
                    "output_bytes": got["output_bytes"],
                }
            )
            log(f"plan-scale n={size} {mode}: {t:.2f}s {got['peak_rss_mib']:.0f} MiB")
        path.unlink()
    exponents: dict[str, dict[str, float | None]] = {}
    big = sorted(sizes)[-2:] if len(sizes) >= 2 else []
    for mode, _ in MODES:
        pts = {r["nodes"]: r for r in rows if r["mode"] == mode}
        if len(big) == 2:
            a, b = pts[big[0]], pts[big[1]]
            exponents[mode] = {
                "time": rnd(growth(big[0], a["median_s"], big[1], b["median_s"]), 2),
                "time_above_floor": rnd(
                    growth(
                        big[0],
                        a["median_s"] - a["floor_s"],
                        big[1],
                        b["median_s"] - b["floor_s"],
                    ),
                    2,
                ),
                "rss_kib_per_node": rnd(
                    1024 * (b["peak_rss_mib"] - a["peak_rss_mib"]) / (big[1] - big[0]), 1
                ),
            }
    params = {
        "target": TARGET,
        "current": CURRENT,
        "control_planes": CONTROL_PLANES,
        "dnf_every": DNF_EVERY,
        "floor": "python start-up + json load + Facts.from_dict of the same file",
        "growth_between": list(big),
        "rss": "ru_maxrss of the process (wait4)",
    }
    return result_doc("plan-scale", params, rows, growth=exponents)


def render(doc: dict[str, Any]) -> str:
    head = ("mode", "nodes", "median s", "ms/node", "peak RSS MiB", "floor s", "x floor")
    keys = ("mode", "nodes", "median_s", "ms_per_node", "peak_rss_mib", "floor_s", "x_floor")
    rows = rows_of(doc, keys)
    between = doc["params"].get("growth_between") or []
    lines = [
        f"{m}: time exponent {g['time']}, above floor {g['time_above_floor']}, "
        f"RSS {g['rss_kib_per_node']} KiB/node"
        for m, g in doc.get("growth", {}).items()
    ]
    tail = ""
    if lines and len(between) == 2:
        tail = f"\n\ngrowth {between[0]} -> {between[1]} nodes (1.0 = linear):\n" + "\n".join(
            f"- {x}" for x in lines
        )
    return table(head, rows) + tail
