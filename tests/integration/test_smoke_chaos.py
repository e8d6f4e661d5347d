"""Smoke test of the chaos campaign (``bench/chaos.py``): a seeded trial with two SIGKILLs
on its own lab converges with no invariant violated, and the checker sees the violations
planted after it (a step run again by hand, a node left cordoned). The full campaign is
``make chaos``."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from bench import chaos
from bench._campaign import Lab

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


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
