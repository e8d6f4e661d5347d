"""Plan -> text and JSON: golden files for sample plans, API step descriptions, the
findings section and the verdict line."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from golden_check import check_golden

from upgrader.core.model import Facts, Finding, Plan, PlanEntry, Severity, Step
from upgrader.core.planner import PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.render import describe_step, render_text
from upgrader.core.versions import KubeVersion

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data" / "facts"
TODAY = date(2024, 6, 1)


def facts(name: str) -> Facts:
    return Facts.from_dict(json.loads((DATA / name).read_text()), source=name)


def plan(f: Facts | str, target: str, **kw: Any) -> Plan:
    policy = kw.pop("policy", PolicyOptions(today=TODAY))
    return build_plan(
        facts(f) if isinstance(f, str) else f,
        KubeVersion.parse(target),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=policy, **kw),
    )


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize(
    ("facts_file", "target", "options", "golden"),
    [
        ("one-cp-two-workers.json", "v1.28.4", {}, "plan-one-cp-two-workers-apt.txt"),
        ("three-cp-dnf.json", "v1.28.4", {}, "plan-three-cp-dnf.txt"),
        ("patch-apt-known.json", "v1.28.4", {}, "plan-patch-apt-known-versions.txt"),
        ("one-cp-two-workers.json", "v1.29.5", {}, "plan-drain-once-apt.txt"),
        ("multi-minor-apt.json", "v1.28.4", {}, "plan-multi-minor-per-hop-apt.txt"),
        ("one-cp-two-workers.json", "v1.28.4", {"nodes": ("w-1",)}, "plan-blocked-nodes.txt"),
        ("all-at-target.json", "v1.28.4", {}, "plan-nothing-to-do.txt"),
    ],
)
def test_golden_text(facts_file: str, target: str, options: dict[str, Any], golden: str) -> None:
    check_golden(golden, render_text(plan(facts_file, target, **options)))


def test_golden_json() -> None:
    doc = plan("one-cp-two-workers.json", "v1.28.4").to_dict()
    check_golden("plan-one-cp-two-workers-apt.json", json.dumps(doc, indent=2) + "\n")


def test_text_comes_from_the_very_steps_that_run() -> None:
    p = plan("three-cp-dnf.json", "v1.28.4")
    text = render_text(p)
    for s in p.steps:
        assert s.description in text
        if s.command:
            assert f"$ {s.command}\n" in text
    # execution order is the text order
    positions = [text.index(f"[{e.hop}] {e.node} ({e.role}, {e.phase})") for e in p.entries]
    assert positions == sorted(positions)


def test_header_and_entry_lines() -> None:
    lines = render_text(plan("one-cp-two-workers.json", "v1.28.4")).splitlines()
    assert lines[0] == "Upgrade plan: v1.27.8 -> v1.28.4"
    assert lines[1] == "Hops: v1.28.4    Worker strategy: per-hop"
    assert "[v1.28.4] cp-1 (control-plane, first-control-plane)" in lines
    assert "[v1.28.4] w-2 (worker, worker)" in lines
    assert "      > drain w-1 via the Eviction API (timeout 600s, PDBs respected)" in lines
    assert lines[-1] == "Can run: 29 steps on 3 nodes."


# --------------------------------------------------------------------------- API steps


def step(kind: str, **kw: Any) -> Step:
    base: dict[str, Any] = {
        "id": f"v1.28.4/w-1/worker/{kind}",
        "kind": kind,
        "node": "w-1",
        "hop": "v1.28.4",
        "phase": "worker",
        "name": kind,
        "description": kind,
        "timeout": 600.0,
    }
    base.update(kw)
    return Step(**base)


def test_describe_api_steps() -> None:
    assert describe_step(step("drain", params={"timeout": 300})) == (
        "drain w-1 via the Eviction API (timeout 300s, PDBs respected)"
    )
    assert describe_step(
        step(
            "drain",
            params={
                "timeout": 600,
                "grace_period": 30,
                "delete_emptydir_data": True,
                "allow_unmanaged": True,
            },
        )
    ) == (
        "drain w-1 via the Eviction API (timeout 600s, PDBs respected, grace period 30s, "
        "emptyDir data deleted, pods without a controller deleted)"
    )
    assert describe_step(step("cordon")) == "cordon w-1 (mark it unschedulable)"
    assert describe_step(step("uncordon")) == (
        "uncordon w-1 (unless it was cordoned before the run)"
    )
    assert describe_step(step("wait-ready", params={"kubelet_version": "v1.28.4"})) == (
        "wait until w-1 is Ready with kubelet v1.28.4 (timeout 600s)"
    )
    assert (
        describe_step(
            step(
                "wait-control-plane",
                params={"version": "v1.28.4", "components": ["kube-apiserver"]},
            )
        )
        == "wait until the kube-apiserver pods of w-1 run v1.28.4 (timeout 600s)"
    )
    assert describe_step(step("shell", command="true")) == "true"
    assert "no command" in describe_step(step("shell"))


# --------------------------------------------------------------------------- findings, verdict


def bare_plan(findings: tuple[Finding, ...], overrides: tuple[str, ...] = (), **kw: Any) -> Plan:
    v = KubeVersion.parse("v1.28.4")
    entry = PlanEntry("w-1", "worker", "worker", "v1.28.4", (step("shell", command="true"),))
    return Plan(
        current=KubeVersion.parse("v1.27.8"),
        target=v,
        hops=(v,),
        entries=kw.get("entries", (entry,)),
        findings=findings,
        overrides=overrides,
    )


FORCE = Finding(
    "KUBEADM_UPGRADE_FIRST",
    Severity.BLOCKER,
    "kubeadm is older than the target",
    node="cp-1",
    fix="upgrade kubeadm first",
    override="--force",
)
UNSUPPORTED = Finding(
    "UNSUPPORTED_TARGET", Severity.BLOCKER, "outside the window", override="--allow-unsupported"
)
HARD = Finding("SKEW_KUBELET_TOO_NEW", Severity.BLOCKER, "kubelet newer", node="w-1")
WARN = Finding("SKEW_KUBECTL", Severity.WARNING, "kubectl skew", node="w-2", fix="upgrade kubectl")
NOTE = Finding("CATCH_UP_HOP", Severity.INFO, "catching up")


def test_findings_are_grouped_with_fix_and_override() -> None:
    text = render_text(bare_plan((NOTE, WARN, FORCE, HARD)))
    blockers = text.index("Blockers (2):")
    warnings = text.index("Warnings (1):")
    notes = text.index("Notes (1):")
    assert blockers < warnings < notes
    assert "  - KUBEADM_UPGRADE_FIRST [cp-1]: kubeadm is older than the target\n" in text
    assert "      fix: upgrade kubeadm first\n      override: --force (not given)\n" in text
    assert "  - SKEW_KUBECTL [w-2]: kubectl skew\n      fix: upgrade kubectl\n" in text
    assert "  - CATCH_UP_HOP: catching up\n" in text


def test_verdict_names_the_flags_that_would_pass_each_blocker() -> None:
    last = render_text(bare_plan((FORCE, UNSUPPORTED, HARD))).splitlines()[-1]
    assert last == (
        "Cannot run: 3 blockers. --force would pass KUBEADM_UPGRADE_FIRST (cp-1); "
        "--allow-unsupported would pass UNSUPPORTED_TARGET; "
        "no flag passes SKEW_KUBELET_TOO_NEW (w-1)."
    )


def test_verdict_when_the_given_flags_pass_every_blocker() -> None:
    text = render_text(bare_plan((FORCE,), overrides=("--force",)))
    assert "Overrides given: --force" in text.splitlines()[2]
    assert "override: --force (given)" in text
    assert text.splitlines()[-1] == (
        "Can run: 1 step on 1 node (--force passes KUBEADM_UPGRADE_FIRST (cp-1))."
    )


def test_verdict_when_only_some_are_passed() -> None:
    last = render_text(bare_plan((FORCE, HARD), overrides=("--force",))).splitlines()[-1]
    assert last == "Cannot run: 1 blocker. No flag passes SKEW_KUBELET_TOO_NEW (w-1)."


def test_nothing_to_do_verdict() -> None:
    p = plan("all-at-target.json", "v1.28.4")
    assert render_text(p).splitlines()[-1] == (
        "Nothing to do: the cluster and every node are at v1.28.4."
    )
    blocked = replace(p, findings=(HARD,))
    assert render_text(blocked).splitlines()[-1].startswith("Cannot run: 1 blocker.")


def test_render_is_pure_text() -> None:
    text = render_text(plan("multi-minor-apt.json", "v1.28.4"))
    assert text.endswith("\n")
    assert "\x1b[" not in text  # no colour codes
