"""Small seeded instances of the reliability campaigns (``bench/chaos.py``, ``bench/fuzz.py``,
``bench/security.py``), so that the default test run keeps them working: a chaos trial with
two SIGKILLs and its invariant checks (and a check that the checker sees a violation), 30
bad-input cases, and the security checks on a few payloads. Each runs against its own lab in
``tmp_path``. The full campaigns are ``make chaos`` and ``make fuzz``.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

# The campaigns live in bench/ at the top of the repository (not an installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import chaos, fuzz, security
from bench._campaign import Lab

pytestmark = pytest.mark.integration


def _break_invariants(lab: Lab, runner: chaos.Runner, found: list[str]) -> None:
    """After the run converged: run `kubeadm upgrade apply` again by hand and cordon a
    node; the checker must report both."""
    subprocess.run(
        ["/bin/sh", str(lab.dir / "bin" / "node-run"), "cp-1", "kubeadm upgrade apply v1.28.4 -y"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    subprocess.run(
        ["kubectl", "--kubeconfig", str(lab.dir / "kubeconfig"), "cordon", "w-1"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    found.extend(chaos.check_invariants(lab, runner).violations)


def test_chaos_two_kills_converge_and_the_checker_sees_violations(tmp_path: Path) -> None:
    trial = chaos.Trial("smoke", chaos.spec_one_hop(), [], 16.0)
    broken: list[str] = []
    res = chaos.kill_trial(
        trial,
        2,
        random.Random(7),
        tmp_path,
        log=lambda _: None,
        inspect=lambda lab, runner: _break_invariants(lab, runner, broken),
    )
    assert res["converged"], res["runs"]
    assert res["violations"] == [], res["violations"]
    assert res["kills"] >= 1, res["runs"]  # a kill misses only when a whole run was quicker
    text = "\n".join(broken)
    assert "ran again after it had succeeded" in text, text
    assert "no-change-outside-a-step: cp-1 ran `kubeadm upgrade apply" in text, text
    assert "cordons: w-1 left cordoned" in text, text


def test_fuzz_thirty_cases(tmp_path: Path) -> None:
    doc = fuzz.campaign(30, 5, tmp_path, every=10)
    assert doc["tried"] + doc["skipped_valid"] >= 30
    assert doc["failures"] == 0, doc["failure_details"]
    assert doc["modes"]["subprocess"] >= 3


# Two labs and two full applies, every node command through the real sudo (a non-root
# SSH user): 5 to 6 minutes alone on 2 cores, beyond the default 600 s when shared.
@pytest.mark.timeout(1200)
def test_security_quick(tmp_path: Path) -> None:
    doc = security.campaign(tmp_path, quick=True, log=lambda _: None)
    problems = [p for c in doc["checks"] for p in c["problems"]]
    assert doc["failed"] == 0, problems
    assert {c["check"] for c in doc["checks"]} == {
        "unknown and changed SSH host keys",
        "known_hosts @revoked and @cert-authority markers",
        "inventory values with shell payloads",
        "url_template with shell-special characters",
        "RBAC without create on Leases, ssh_config Include",
        "facts values with shell payloads, rendered and executed",
        "secrets after a full apply (token, private key, sudo password)",
        "forged state files and symlinked operator files",
        "playbook text with control characters and bidi overrides",
        "kubeconfig client key on disk after SIGKILL; exec plugin announced",
        "lab directory another user controls",
        "node lock held or planted by a non-root user",
        "huge node output: memory stays flat",
        "terminal escapes in node output",
    }
