"""The test tree itself: pytest imports test files by their base name (no packages here),
so two test files with one name in tests/unit and tests/integration make the whole
collection fail ("import file mismatch"), in CI too."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
