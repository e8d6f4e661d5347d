"""Smoke test of the facts fan-out benchmark (``bench/fanout.py``): one repetition at 2
nodes, without the peers (installing ansible-core and pyinfra needs the network); checks
the shape of its result document and its table. Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from smoke import common, no_lab_left

from bench import fanout
from bench._perf import write_result

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_fanout(tmp_path: Path) -> None:
    work = tmp_path / "work"
    doc = fanout.run(work, sizes=(2,), reps=lambda n: 1, peers=False, log=lambda m: None)
    common(doc, "fanout")
    assert {r["tool"] for r in doc["rows"]} == {"upgrader facts", "upgrader plan"}
    for r in doc["rows"]:
        assert r["nodes"] == 2 and r["reps"] == 1
        assert r["median_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["lab_cpu_ms_per_node"] > 0  # the lab's own cost beside each row
        assert len(r["samples_s"]) == 1
    assert "upgrader plan" in fanout.render(doc)
    path = write_result("fanout", doc, tmp_path / "results")
    assert json.loads(path.read_text())["bench"] == "fanout"
    no_lab_left(work)
