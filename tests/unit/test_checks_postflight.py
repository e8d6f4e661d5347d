"""Post-flight: budgets that allowed disruptions before the run must allow them after."""

from __future__ import annotations

from typing import Any

from upgrader.core.checks.postflight import pdb_regressions


def pdb(name: str, allowed: int | None, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = dict(status)
    if allowed is not None:
        st["disruptionsAllowed"] = allowed
    return {"metadata": {"name": name, "namespace": "default"}, "status": st}


def test_recovered_budgets_pass() -> None:
    before = [pdb("web", 1), pdb("db", 0), pdb("gone", 1), pdb("new-status", None)]
    after = [pdb("web", 1), pdb("db", 0), pdb("new-status", 0)]
    assert pdb_regressions(before, after) == []


def test_a_budget_that_lost_its_disruptions() -> None:
    before = [pdb("web", 2), pdb("api", 1)]
    after = [pdb("web", 0, currentHealthy=2, desiredHealthy=3), pdb("api", None)]
    got = pdb_regressions(before, after)
    assert got == [
        "PodDisruptionBudget default/web allowed 2 disruption(s) before the run and 0 now; "
        "2 healthy, 3 needed",
        "PodDisruptionBudget default/api allowed 1 disruption(s) before the run and an "
        "unknown number now",
    ]
