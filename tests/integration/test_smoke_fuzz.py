"""Smoke test of the fuzz campaign (``bench/fuzz.py``): 30 seeded bad-input cases against
its own lab, each refused cleanly. The full campaign is ``make fuzz``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import fuzz

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_fuzz_thirty_cases(tmp_path: Path) -> None:
    doc = fuzz.campaign(30, 5, tmp_path, every=10)
    assert doc["tried"] + doc["skipped_valid"] >= 30
    assert doc["failures"] == 0, doc["failure_details"]
    assert doc["modes"]["subprocess"] >= 3
