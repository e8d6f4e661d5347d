"""Smoke test of the plan-at-scale benchmark (``bench/plan_scale.py``): 10 and 50 generated
nodes, one repetition, checking the facts it generates and the shape of its JSON.

Timings are never asserted: only that the benchmark runs end to end, that the generated
facts file plans as the README describes it (3 control planes, the rest workers, apt and
dnf, one minor behind), and that the result document has the fields its table and the
growth figures are made from.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import plan_scale
from bench._perf import child_env, upgrader_argv, write_result

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(300)]


def test_generated_facts_plan_one_minor_up_on_every_node(tmp_path: Path) -> None:
    path = plan_scale.write_facts(tmp_path, 50)
    doc = json.loads(path.read_text())
    roles = [n["role"] for n in doc["nodes"]]
    assert roles[:3] == ["control-plane"] * 3 and roles[3:] == ["worker"] * 47
    assert len({n["name"] for n in doc["nodes"]}) == 50
    families = [n["os_family"] for n in doc["nodes"]]
    assert families.count("rhel") == 4 and families.count("debian") == 46  # w-10, w-20, ...
    r = subprocess.run(
        upgrader_argv("plan", "--facts", str(path), "--to", plan_scale.TARGET, "--json"),
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [str(h) for h in plan["hops"]] == [plan_scale.TARGET]
    visited = {e["name"] for e in plan["nodes"] if e["phase"] != "prestage"}
    assert visited == {n["name"] for n in doc["nodes"]}


def test_plan_scale_benchmark_shape(tmp_path: Path) -> None:
    doc = plan_scale.run(tmp_path / "work", sizes=(10, 50), reps=1, log=lambda m: None)
    assert doc["bench"] == "plan-scale"
    assert {"date", "cpus", "python"} <= set(doc["machine"])
    rows = doc["rows"]
    assert [(r["mode"], r["nodes"]) for r in rows] == [
        (m, n) for n in (10, 50) for m in ("brief", "--json", "--detail")
    ]
    for r in rows:
        assert r["reps"] == 1 and len(r["samples_s"]) == 1
        for key in ("median_s", "peak_rss_mib", "ms_per_node", "floor_s", "floor_rss_mib"):
            assert r[key] > 0, key
        assert r["x_floor"] > 0 and r["output_bytes"] > 0 and r["facts_bytes"] > 0
    assert doc["params"]["growth_between"] == [10, 50]
    assert set(doc["growth"]) == {"brief", "--json", "--detail"}
    for g in doc["growth"].values():
        assert isinstance(g["time"], float) and isinstance(g["rss_kib_per_node"], float)
    text = plan_scale.render(doc)
    assert "x floor" in text and "growth 10 -> 50 nodes" in text
    assert not list((tmp_path / "work" / "plan-scale").glob("*.json"))  # facts removed
    path = write_result("plan-scale", doc, tmp_path / "results")
    assert json.loads(path.read_text())["rows"] == rows
