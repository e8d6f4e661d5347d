"""Smoke test of the security campaign (``bench/security.py``, quick), its host and input
checks on one lab: host keys, known_hosts markers, inventory values, url_template, RBAC and
ssh_config. The whole campaign is ``make security``."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import security_quick

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_security_quick_hosts_and_inputs(tmp_path: Path) -> None:
    security_quick(tmp_path, "hosts")
