"""Smoke test of the memory benchmark (``bench/memory.py``): a plan and a full apply at 2
nodes; checks the shape of its result document and that its table renders. Peak RSS is
never compared with a figure."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import common, no_lab_left

from bench import memory

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_memory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    doc = memory.run(
        work,
        plan_sizes=(2,),
        full_apply_sizes=(2,),
        limited_apply_sizes=(),
        log=lambda m: None,
    )
    common(doc, "memory")
    assert [(r["command"], r["nodes"]) for r in doc["rows"]] == [("plan", 2), ("apply", 2)]
    assert all(r["peak_rss_mib"] > 0 and r["completed"] for r in doc["rows"])
    memory.render(doc)
    no_lab_left(work)
