"""Smoke test of the performance benchmarks (``bench/``): one tiny iteration of each
benchmark function on 2-node labs, checking the shape of the JSON each one writes.

Timings are never asserted: only that every benchmark runs end to end, its labs come
down, and its result document has the fields the README tables are made from. The peers
(ansible-core, pyinfra) are left out here (installing them needs the network); kubectl is
measured when it is on PATH.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(_REPO))

from bench import drain, fanout, memory, overhead, window  # noqa: E402
from bench._perf import write_result  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _common(doc: dict[str, Any], bench: str) -> None:
    assert doc["bench"] == bench
    assert {"date", "cpus", "python"} <= set(doc["machine"])
    assert isinstance(doc["params"], dict)
    assert doc["rows"], "no rows"
    json.dumps(doc)  # JSON-ready


def _no_lab_left(work: Path) -> None:
    assert not [p for p in work.iterdir() if p.is_dir() and (p / "spec.json").exists()]


def test_fanout_overhead_window_memory_and_drain(tmp_path: Path) -> None:
    work = tmp_path / "work"

    doc = fanout.run(work, sizes=(2,), reps=lambda n: 1, peers=False, log=lambda m: None)
    _common(doc, "fanout")
    assert {r["tool"] for r in doc["rows"]} == {"upgrader facts", "upgrader plan"}
    for r in doc["rows"]:
        assert r["nodes"] == 2 and r["reps"] == 1
        assert r["median_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["lab_cpu_ms_per_node"] > 0  # the lab's own cost beside each row
        assert len(r["samples_s"]) == 1
    assert "upgrader plan" in fanout.render(doc)
    path = write_result("fanout", doc, tmp_path / "results")
    assert json.loads(path.read_text())["bench"] == "fanout"

    doc, runs = overhead.run(work, workers=1, reps=1, log=lambda m: None)
    _common(doc, "overhead")
    assert [r["config"] for r in doc["rows"]] == ["simulated durations", "zero durations"]
    for r in doc["rows"]:
        assert r["nodes"] == 2
        for key in ("run_s", "injected_s", "overhead_s", "overhead_per_node_s"):
            assert isinstance(r[key], float | int)
        assert "wait-ready" in r["steps"] and "drain" in r["steps"]
    # the floor is what the lab's tools spent in their calls: their simulated delays
    assert doc["rows"][0]["injected_s"] > doc["rows"][1]["injected_s"] >= 0
    assert doc["rows"][1]["overhead_pct"] is None  # no simulated durations, no percentage
    assert len(runs) == 1
    overhead.render(doc)

    doc = window.run(work, runs=runs, log=lambda m: None)
    _common(doc, "window")
    row = doc["rows"][0]
    assert row["worker"] == "w-1" and row["window_median_s"] > 0 and row["floor_s"] > 0
    assert "drain" in row["steps_median_s"]
    window.render(doc)

    doc = memory.run(
        work,
        plan_sizes=(2,),
        full_apply_sizes=(2,),
        limited_apply_sizes=(),
        log=lambda m: None,
    )
    _common(doc, "memory")
    assert [(r["command"], r["nodes"]) for r in doc["rows"]] == [("plan", 2), ("apply", 2)]
    assert all(r["peak_rss_mib"] > 0 and r["completed"] for r in doc["rows"])
    memory.render(doc)

    tools: tuple[str, ...] = ("upgrader", "kubectl") if shutil.which("kubectl") else ("upgrader",)
    spec = drain.drain_spec(deployments=2, per_node=2, termination=0.2, workers=1)
    doc = drain.run(work, reps=1, spec=spec, tools=tools, log=lambda m: None)
    _common(doc, "drain")
    assert {r["tool"] for r in doc["rows"]} == set(tools)
    for r in doc["rows"]:
        assert r["pods"] == 4 and r["median_s"] > 0 and r["floor_s"] > 0
    drain.render(doc)

    _no_lab_left(work)
