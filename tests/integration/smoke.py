"""Shared checks of the smoke tests (``test_smoke_*.py``): short instances of the benchmarks
and campaigns of ``bench/`` that the default test run keeps working.

Owns the checks every benchmark's result document must pass (:func:`common`), the check
that a benchmark brought its labs down (:func:`no_lab_left`), and the quick security
campaign on a group of its checks (:data:`SECURITY_GROUPS`, :func:`security_quick`): the
security smoke test is split into groups of checks, one test file each, so that they run
side by side and a failure names its group. Timings are never asserted.

Must not: shorten a benchmark or campaign below the size at which it still runs end to
end and writes its table (the benchmarks' own parameters decide what they measure).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import security

# The security campaign's checks, by the name ``security.campaign(only=...)`` takes, in
# groups of about equal time; every check is in exactly one group (test_smoke_security_*).
SECURITY_GROUPS: dict[str, tuple[str, ...]] = {
    "hosts": (
        "host keys",
        "known_hosts markers",
        "inventory values",
        "url_template",
        "rbac and ssh_config",
    ),
    "files": (
        "state files",
        "playbook text",
        "kubeconfig credentials",
        "lab directory",
        "node lock",
    ),
    "output": ("node output", "terminal escapes", "facts values"),
    "secrets": ("secrets",),
}


def common(doc: dict[str, Any], bench: str) -> None:
    """What every benchmark's result document has, whatever its table."""
    assert doc["bench"] == bench
    assert {"date", "cpus", "python"} <= set(doc["machine"])
    assert isinstance(doc["params"], dict)
    assert doc["rows"], "no rows"
    json.dumps(doc)  # JSON-ready


def no_lab_left(work: Path) -> None:
    assert not [p for p in work.iterdir() if p.is_dir() and (p / "spec.json").exists()]


def security_quick(work: Path, group: str) -> set[str]:
    """The quick security campaign on the checks of ``group``: every one must pass; returns
    the titles of the checks that ran (one per check name)."""
    names = SECURITY_GROUPS[group]
    doc = security.campaign(work, quick=True, log=lambda _: None, only=names)
    problems = [p for c in doc["checks"] for p in c["problems"]]
    assert doc["failed"] == 0, problems
    assert len(doc["checks"]) == len(names), [c["check"] for c in doc["checks"]]
    assert {"cpus", "python"} <= set(doc["machine"])
    return {c["check"] for c in doc["checks"]}
