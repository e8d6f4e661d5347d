"""Smoke test of the orchestration-overhead and drained-window benchmarks
(``bench/overhead.py``, ``bench/window.py``): one apply per configuration on a 1+1-node
lab, the window read from the run with simulated durations; checks the shape of both result
documents and that their tables render. Timings are never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import common, no_lab_left

from bench import overhead, window

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_overhead_and_window(tmp_path: Path) -> None:
    work = tmp_path / "work"
    doc, runs = overhead.run(work, workers=1, reps=1, log=lambda m: None)
    common(doc, "overhead")
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
    common(doc, "window")
    row = doc["rows"][0]
    assert row["worker"] == "w-1" and row["window_median_s"] > 0 and row["floor_s"] > 0
    assert "drain" in row["steps_median_s"]
    window.render(doc)
    no_lab_left(work)
