"""Shared checks of the smoke tests (``test_smoke_*.py``): short instances of the benchmarks
and campaigns of ``bench/`` that the default test run keeps working.

Owns the checks every benchmark's result document must pass (:func:`common`), the check
that a benchmark brought its labs down (:func:`no_lab_left`), and the quick security
campaign on a group of its checks (:data:`SECURITY_GROUPS`, their names and titles;
:func:`security_quick`): the security smoke test is split into groups of checks, one test
file each, so that they run side by side and a failure names its group. Timings are never
asserted.

Must not: shorten a benchmark or campaign below the size at which it still runs end to
end and writes its table (the benchmarks' own parameters decide what they measure).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import security

# The security campaign's checks, by the name ``security.campaign(only=...)`` takes, with the
# title each reports, in groups of about equal time; every check is in exactly one group
# (test_smoke_security_*).
SECURITY_GROUPS: dict[str, dict[str, str]] = {
    "hosts": {
        "host keys": "unknown and changed SSH host keys",
        "known_hosts markers": "known_hosts @revoked and @cert-authority markers",
        "inventory values": "inventory values with shell payloads",
        "url_template": "url_template with shell-special characters",
        "rbac and ssh_config": "RBAC without create on Leases, ssh_config Include",
    },
    "files": {
        "state files": "forged state files and symlinked operator files",
        "playbook text": "playbook text with control characters and bidi overrides",
        "kubeconfig credentials": (
            "kubeconfig client key on disk after SIGKILL; exec plugin announced"
        ),
        "lab directory": "lab directory another user controls",
        "node lock": "node lock held or planted by a non-root user",
    },
    "output": {
        "node output": "huge node output: memory stays flat",
        "terminal escapes": "terminal escapes in node output",
        "facts values": "facts values with shell payloads, rendered and executed",
    },
    "secrets": {"secrets": "secrets after a full apply (token, private key, sudo password)"},
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


def security_quick(work: Path, group: str) -> None:
    """The quick security campaign on the checks of ``group``: every one must pass, and the
    checks that ran are the group's, one each, under their titles."""
    titles = SECURITY_GROUPS[group]
    doc = security.campaign(work, quick=True, log=lambda _: None, only=tuple(titles))
    problems = [p for c in doc["checks"] for p in c["problems"]]
    assert doc["failed"] == 0, problems
    assert len(doc["checks"]) == len(titles), [c["check"] for c in doc["checks"]]
    assert {"cpus", "python"} <= set(doc["machine"])
    assert {c["check"] for c in doc["checks"]} == set(titles.values())
