"""Smoke test of the security campaign (``bench/security.py``, quick), its node-output
checks on one lab: huge output, terminal escapes, facts values with shell payloads. The
whole campaign is ``make security``."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import security_quick

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_security_quick_node_output(tmp_path: Path) -> None:
    security_quick(tmp_path, "output")
