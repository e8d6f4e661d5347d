"""Preflight findings merged into the plan by ``make_plan`` (planner glue)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from upgrader.core.checks.access import Access, AccessResult
from upgrader.core.checks.health import CommandOutcome
from upgrader.core.checks.inputs import PreflightInputs
from upgrader.core.model import Facts, Severity
from upgrader.core.versions import KubeVersion
from upgrader.planning import PlanRequest, make_plan

DATA = Path(__file__).resolve().parents[1] / "data"
TODAY = date(2024, 6, 1)
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def facts(name: str = "one-cp-two-workers.json", **extra: dict[str, Any]) -> Facts:
    f = Facts.from_dict(json.loads((DATA / "facts" / name).read_text()))
    nodes = tuple(
        dataclasses.replace(n, extra=extra.get(n.name.replace("-", "_"), n.extra)) for n in f.nodes
    )
    return dataclasses.replace(f, nodes=nodes)


def request(**kw: Any) -> PlanRequest:
    return PlanRequest(
        target=KubeVersion.parse(kw.pop("target", "v1.28.4")),
        release_data=DATA / "facts" / "releases.json",
        today=TODAY,
        **kw,
    )


def ready_node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, **spec},
        "status": {"phase": "Running"},
    }


def inputs(**kw: Any) -> PreflightInputs:
    base: dict[str, Any] = dict(
        now=NOW,
        access=(AccessResult(Access("get", "nodes"), True),),
        nodes=tuple(ready_node(n) for n in ("cp-1", "w-1", "w-2")),
        pods=(),
        pdbs=(),
        deprecated_requests=(),
        applied_objects=(),
        etcd={
            "cp-1": CommandOutcome(
                0, "https://127.0.0.1:2379 is healthy: successfully committed proposal: took = 2ms"
            )
        },
    )
    base.update(kw)
    return PreflightInputs(**base)


def codes(plan: Any) -> list[str]:
    return [f.code for f in plan.findings]


def test_clean_inputs_add_nothing() -> None:
    plain = make_plan(facts(), request())
    with_pre = make_plan(facts(), request(), preflight=inputs())
    assert with_pre.findings == plain.findings
    assert with_pre.entries == plain.entries


def test_findings_are_merged_and_block() -> None:
    lonely = pod("lonely", "w-1", volumes=[{"name": "v", "emptyDir": {}}])
    pre = inputs(
        access=(AccessResult(Access("create", "pods", subresource="eviction"), False),),
        nodes=(
            ready_node("cp-1"),
            {
                "metadata": {"name": "w-2"},
                "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            },
        ),
        pods=(lonely,),
        etcd={"cp-1": CommandOutcome(1, "Error: unhealthy cluster")},
    )
    plan = make_plan(facts(), request(), preflight=pre)
    got = codes(plan)
    for code in (
        "PERMISSION_MISSING",
        "NODE_NOT_READY",
        "ETCD_UNHEALTHY",
        "DRAIN_EMPTYDIR",
        "DRAIN_UNMANAGED_POD",
    ):
        assert code in got
    assert {f.code for f in plan.blockers} >= {"PERMISSION_MISSING", "DRAIN_EMPTYDIR"}


def test_drain_flags_pass_their_blockers() -> None:
    lonely = pod("lonely", "w-1", volumes=[{"name": "v", "emptyDir": {}}])
    plan = make_plan(
        facts(),
        request(delete_emptydir_data=True, overrides=("--force",)),
        preflight=inputs(pods=(lonely,)),
    )
    drain = [f for f in plan.findings if f.code.startswith("DRAIN_")]
    assert {f.severity for f in drain} == {Severity.WARNING}
    assert not any(f.code.startswith("DRAIN_") for f in plan.blockers)
    assert "--delete-emptydir-data" in plan.overrides


def test_only_drained_nodes_are_checked() -> None:
    lonely = pod("lonely", "w-2")
    plan = make_plan(facts(), request(nodes=("w-1",)), preflight=inputs(pods=(lonely,)))
    assert "DRAIN_UNMANAGED_POD" not in codes(plan)


def test_facts_checks_run_without_inputs_and_strict_applies() -> None:
    insecure = {"kubelet_config": "readOnlyPort: 10255\n"}
    plan = make_plan(facts(w_1=insecure), request())
    found = [f for f in plan.findings if f.code == "KUBELET_READ_ONLY_PORT"]
    assert [(f.node, f.severity) for f in found] == [("w-1", Severity.WARNING)]
    strict = make_plan(facts(w_1=insecure), request(strict=True))
    assert "KUBELET_READ_ONLY_PORT" in {f.code for f in strict.blockers}


def test_nothing_to_do_adds_nothing() -> None:
    pre = inputs(etcd={"cp-1": CommandOutcome(1, "Error: unhealthy cluster")})
    plan = make_plan(facts("all-at-target.json"), request(target="v1.28.4"), preflight=pre)
    assert not plan.entries
    assert "ETCD_UNHEALTHY" not in codes(plan)


def test_lease_own_run_and_break_lock() -> None:
    lease = {
        "spec": {
            "holderIdentity": "me@box/abc",
            "leaseDurationSeconds": 60,
            "renewTime": NOW.isoformat(),
        }
    }
    assert "LOCK_HELD" in {
        f.code for f in make_plan(facts(), request(), preflight=inputs(lease=lease)).blockers
    }
    own = make_plan(facts(), request(own_run_id="abc"), preflight=inputs(lease=lease))
    assert "LOCK_HELD" not in codes(own)
    broken = make_plan(facts(), request(break_lock=True), preflight=inputs(lease=lease))
    assert "LOCK_HELD" in codes(broken) and "LOCK_HELD" not in {f.code for f in broken.blockers}


def test_no_api_reads_when_the_api_was_unreachable() -> None:
    from upgrader.core.model import Finding
    from upgrader.preflight import collect_for

    f = dataclasses.replace(
        facts(), findings=(Finding("API_UNREACHABLE", Severity.BLOCKER, "Kubernetes API: down"),)
    )
    never: Any = None  # neither the API nor a node may be touched
    pre = collect_for(never, f, never, never, target=KubeVersion.parse("v1.28.4"), now=NOW)
    assert pre == PreflightInputs(now=NOW)
