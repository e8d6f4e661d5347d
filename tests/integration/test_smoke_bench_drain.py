"""Smoke test of the drain benchmark (``bench/drain.py``): one drain of 4 pods by upgrader
(and by kubectl when it is on PATH) on a 1+1-node lab; checks the shape of its result
document and that its table renders. Timings are never asserted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from smoke import common, no_lab_left

from bench import drain

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_drain(tmp_path: Path) -> None:
    work = tmp_path / "work"
    tools: tuple[str, ...] = ("upgrader", "kubectl") if shutil.which("kubectl") else ("upgrader",)
    spec = drain.drain_spec(deployments=2, per_node=2, termination=0.2, workers=1)
    doc = drain.run(work, reps=1, spec=spec, tools=tools, log=lambda m: None)
    common(doc, "drain")
    assert {r["tool"] for r in doc["rows"]} == set(tools)
    for r in doc["rows"]:
        assert r["pods"] == 4 and r["median_s"] > 0 and r["floor_s"] > 0
    drain.render(doc)
    no_lab_left(work)
