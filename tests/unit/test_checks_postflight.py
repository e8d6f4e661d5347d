"""Post-flight: budgets that allowed disruptions before the run must allow them after; the
CoreDNS and kube-proxy addons at the target once every control plane is."""

from __future__ import annotations

from typing import Any

from upgrader.core.checks.postflight import addon_problems, pdb_regressions


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


# --------------------------------------------------------------------------- addons

APIS_AT_TARGET = {
    "cp-1": "registry.k8s.io/kube-apiserver:v1.29.2",
    "cp-2": "registry.k8s.io/kube-apiserver:v1.29.2",
}
DNS_129 = "registry.k8s.io/coredns/coredns:v1.11.1"


def test_addons_at_the_target_are_no_problem() -> None:
    proxy = "registry.k8s.io/kube-proxy:v1.29.2"
    assert addon_problems("v1.29.2", APIS_AT_TARGET, proxy, DNS_129, DNS_129) == []


def test_addons_left_behind_by_a_partial_apply_are_named() -> None:
    old_proxy = "registry.k8s.io/kube-proxy:v1.28.4"
    old_dns = "registry.k8s.io/coredns/coredns:v1.10.1"
    problems = addon_problems("v1.29.2", APIS_AT_TARGET, old_proxy, old_dns, DNS_129)
    assert len(problems) == 2
    assert problems[0].startswith(
        "kube-proxy DaemonSet runs registry.k8s.io/kube-proxy:v1.28.4, expected tag v1.29.2; "
        "kubeadm's addon phase did not finish: run `kubeadm upgrade apply v1.29.2` again"
    )
    assert problems[1].startswith(f"CoreDNS Deployment runs {old_dns}, expected {DNS_129}")


def test_addons_wait_while_a_control_plane_lags_and_absent_addons_are_skipped() -> None:
    lagging = {**APIS_AT_TARGET, "cp-2": "registry.k8s.io/kube-apiserver:v1.28.4"}
    old_proxy = "registry.k8s.io/kube-proxy:v1.28.4"
    assert addon_problems("v1.29.2", lagging, old_proxy, None, DNS_129) == []
    assert addon_problems("v1.29.2", APIS_AT_TARGET, None, None, DNS_129) == []
    # the expected CoreDNS image unknown (no kubeadm to ask): not compared
    assert addon_problems("v1.29.2", APIS_AT_TARGET, None, "x/coredns:v0", None) == []
