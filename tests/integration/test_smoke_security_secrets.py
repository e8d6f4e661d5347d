"""Smoke test of the security campaign (``bench/security.py``, quick), its secrets check: a
full apply through the real sudo (a non-root SSH user) on a lab of its own, then no token,
sudo password or private key in any record or argv. Also checks that the smoke groups
cover every check of the campaign once. The whole campaign is ``make security``."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke import SECURITY_GROUPS, security_quick

from bench import security

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_the_smoke_groups_hold_every_check_once() -> None:
    grouped = [name for names in SECURITY_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(security.CHECK_NAMES)
    assert len(grouped) == len(set(grouped)) == 14
    with pytest.raises(ValueError, match="unknown checks"):
        security.campaign(Path("unused"), only=("no such check",))


def test_security_quick_secrets(tmp_path: Path) -> None:
    security_quick(tmp_path, "secrets")
