"""Smoke test of the security campaign (``bench/security.py``, quick), its file checks on
one lab: forged state files and symlinks, playbook text, kubeconfig credentials, the lab
directory, the node lock. The whole campaign is ``make security``."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import security_quick

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_security_quick_files_and_locks(tmp_path: Path) -> None:
    security_quick(tmp_path, "files")
