"""The planner on sample facts (tests/data/facts): order, skips, hops, strategies, ids,
options and its own findings."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from upgrader.core.model import ControlPlaneVersions, Facts, Finding, Plan, Severity
from upgrader.core.planner import PlanOptions, RepoConfig, build_plan
from upgrader.core.playbook import Playbook, load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import ReleaseData, load_release_data
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
TODAY = date(2024, 6, 1)  # 1.28, 1.29, 1.30 supported in the test release data


def facts(name: str) -> Facts:
    return Facts.from_dict(json.loads((DATA / name).read_text()), source=name)


def releases() -> ReleaseData:
    return load_release_data(DATA / "releases.json")


def plan(
    f: Facts | str,
    target: str,
    playbook: Playbook | None = None,
    **kw: Any,
) -> Plan:
    policy = kw.pop("policy", PolicyOptions(today=TODAY))
    return build_plan(
        facts(f) if isinstance(f, str) else f,
        KubeVersion.parse(target),
        playbook or load_playbooks(),
        releases(),
        PlanOptions(policy=policy, **kw),
    )


Visit = tuple[str, str, str]  # (hop, node, phase) of a plan entry


def order(p: Plan) -> list[Visit]:
    return [(e.hop, e.node, e.phase) for e in p.entries]


def single_cp_visits(hop: str) -> list[Visit]:
    """cp-1, the one control-plane node, at ``hop``: ``kubeadm upgrade apply``, then its kubelet."""
    return [(hop, "cp-1", "first-control-plane"), (hop, "cp-1", "control-plane-kubelet")]


def visits(hop: str, phase: str, *names: str) -> list[Visit]:
    return [(hop, name, phase) for name in names]


def worker_visits(hop: str, *names: str) -> list[Visit]:
    return visits(hop, "worker", *names)


def one_cp_two_workers(hop: str) -> list[Visit]:
    """Every visit of one-cp-two-workers.json at ``hop``: cp-1, then w-1 and w-2."""
    return single_cp_visits(hop) + worker_visits(hop, "w-1", "w-2")


def codes(p: Plan, severity: Severity | None = None) -> list[str]:
    return [f.code for f in p.findings if severity is None or f.severity == severity]


def set_node(f: Facts, name: str, **changes: Any) -> Facts:
    return replace(f, nodes=tuple(replace(n, **changes) if n.name == name else n for n in f.nodes))


# --------------------------------------------------------------------------- order


def test_one_cp_two_workers_order_and_steps() -> None:
    p = plan("one-cp-two-workers.json", "v1.28.4")
    assert p.current == KubeVersion.parse("v1.27.8")
    assert [str(h) for h in p.hops] == ["v1.28.4"]
    assert p.strategy == "per-hop"
    assert order(p) == one_cp_two_workers("v1.28.4")
    assert not p.blockers
    first = p.entries[0]
    assert [s.name for s in first.steps] == [
        "package-repository",  # the node's repository is at 1.27
        "kubeadm-package",
        "pull-images",  # with the new kubeadm: its own image list
        "kubeadm-upgrade-plan",
        "etcd-snapshot",
        "kubeadm-upgrade-apply",
    ]
    assert first.steps[-1].command == "kubeadm upgrade apply v1.28.4 -y"
    # every visit refreshes the repository (its signing key), not only the minor switch
    assert [s.name for s in p.entries[1].steps] == [
        "package-repository",
        "drain",
        "kubelet-kubectl-packages",
        "restart-kubelet",
        "wait-ready",
        "wait-control-plane",
        "uncordon",
    ]
    w = p.entries[2]
    assert [s.name for s in w.steps] == [
        "package-repository",
        "kubeadm-package",
        "kubeadm-upgrade-node",
        "drain",
        "kubelet-kubectl-packages",
        "restart-kubelet",
        "wait-ready",
        "uncordon",
    ]
    assert all(s.node == "w-1" and s.hop == "v1.28.4" for s in w.steps)
    assert w.steps[6].params["kubelet_version"] == "v1.28.4"


def test_package_manager_derived_from_os_family() -> None:
    p = plan("one-cp-two-workers.json", "v1.28.4")  # facts: os_family debian, no manager
    cmd = p.entries[0].steps[1].command or ""
    assert cmd.startswith("apt-get -o DPkg::Lock::Timeout=300 check >/dev/null && apt-mark unhold")


def test_three_control_planes_order() -> None:
    p = plan("three-cp-dnf.json", "v1.28.4")
    assert order(p) == [
        ("v1.28.4", "cp-1", "first-control-plane"),
        *visits("v1.28.4", "control-plane", "cp-2", "cp-3"),
        *visits("v1.28.4", "control-plane-kubelet", "cp-1", "cp-2", "cp-3"),
        ("v1.28.4", "w-1", "worker"),
    ]
    cp2 = p.entries[1]
    assert [s.name for s in cp2.steps][-1] == "kubeadm-upgrade-node"
    assert cp2.steps[-1].command == "kubeadm upgrade node"
    assert "dnf install -y kubeadm-" in (cp2.steps[1].command or "")
    assert not any(
        "kubeadm upgrade apply" in (s.command or "") for e in p.entries[1:] for s in e.steps
    )


def test_multi_minor_per_hop() -> None:
    p = plan("multi-minor-apt.json", "v1.28.4", strategy="per-hop")
    assert [str(h) for h in p.hops] == ["v1.27.16", "v1.28.4"]
    assert p.strategy == "per-hop"
    assert order(p) == one_cp_two_workers("v1.27.16") + one_cp_two_workers("v1.28.4")
    assert not p.blockers
    # each hop switches the repository to its minor
    repos = [s.command for s in p.steps if s.name == "package-repository" and s.node == "w-1"]
    assert len(repos) == 2
    assert "core:/stable:/v1.27/deb/" in (repos[0] or "")
    assert "core:/stable:/v1.28/deb/" in (repos[1] or "")
    applies = [s.command for s in p.steps if s.name == "kubeadm-upgrade-apply"]
    assert applies == ["kubeadm upgrade apply v1.27.16 -y", "kubeadm upgrade apply v1.28.4 -y"]


def test_multi_minor_auto_is_per_hop_when_kubeadm_forbids_drain_once() -> None:
    # kubeadm 1.28 allows kubelets one minor below the target: 1.26 kubelets must move first
    p = plan("multi-minor-apt.json", "v1.28.4")
    assert p.strategy == "per-hop"
    assert order(p) == order(plan("multi-minor-apt.json", "v1.28.4", strategy="per-hop"))


def test_multi_minor_drain_once_refused_still_lists_its_steps() -> None:
    p = plan("multi-minor-apt.json", "v1.28.4", strategy="drain-once")
    assert p.strategy == "drain-once"
    assert "DRAIN_ONCE_NOT_ALLOWED" in [f.code for f in p.blockers]
    assert order(p) == single_cp_visits("v1.27.16") + one_cp_two_workers("v1.28.4")


def test_drain_once_workers_visited_once_at_the_target() -> None:
    p = plan("one-cp-two-workers.json", "v1.29.5")  # 1.27 -> 1.28.10 -> 1.29.5
    assert [str(h) for h in p.hops] == ["v1.28.10", "v1.29.5"]
    assert p.strategy == "drain-once"  # auto: allowed, two minor hops
    assert not p.blockers
    assert order(p) == single_cp_visits("v1.28.10") + one_cp_two_workers("v1.29.5")
    w1 = p.entries[4]
    assert [s.kind for s in w1.steps].count("drain") == 1
    repo = w1.steps[0]
    assert repo.name == "package-repository"
    assert "core:/stable:/v1.29/deb/" in (repo.command or "")  # 1.27 -> 1.29 directly


def test_drain_once_and_per_hop_give_different_worker_visits() -> None:
    per_hop = plan("one-cp-two-workers.json", "v1.29.5", strategy="per-hop")
    seen = [e for e in order(per_hop) if e[2] == "worker"]
    assert seen == worker_visits("v1.28.10", "w-1", "w-2") + worker_visits("v1.29.5", "w-1", "w-2")


def with_site_shell_step(
    tmp_path: Path, where: str, name: str, command: str | dict[str, str], **more: Any
) -> Playbook:
    """The default playbook and a site.yaml that adds shell step ``name`` (described by its
    name; ``more``: its other keys) to the worker phase's ``where`` ("pre" or "post") steps,
    loaded from a folder under ``tmp_path``."""
    step = {"name": name, "kind": "shell", "description": name, "command": command, **more}
    pb_dir = tmp_path / "pb"
    pb_dir.mkdir()
    default = (Path(__file__).resolve().parents[2] / "playbooks" / "default.yaml").read_text()
    (pb_dir / "default.yaml").write_text(default)
    (pb_dir / "site.yaml").write_text(yaml.safe_dump({"phases": {"worker": {where: [step]}}}))
    return load_playbooks(pb_dir)


def test_strategy_conditions_in_the_playbook(tmp_path: Path) -> None:
    pb = with_site_shell_step(
        tmp_path,
        "pre",
        "notify-drain-once",
        "/usr/local/bin/page {node} {kversion}",
        when={"strategy": "drain-once"},
    )
    once = plan("one-cp-two-workers.json", "v1.29.5", pb, strategy="drain-once")
    hop = plan("one-cp-two-workers.json", "v1.29.5", pb, strategy="per-hop")
    once_w1 = next(e for e in once.entries if e.node == "w-1")
    assert once_w1.steps[0].command == "/usr/local/bin/page w-1 v1.29.5"
    assert all(s.name != "notify-drain-once" for s in hop.steps)


# --------------------------------------------------------------------------- skips


def test_partially_upgraded_cluster_skips_what_is_done() -> None:
    p = plan("partially-upgraded.json", "v1.28.4")
    assert order(p) == [("v1.28.4", "w-2", "worker")]
    assert not p.blockers
    w2 = p.entries[0]
    assert w2.steps[0].name == "package-repository"  # w-2 still points at 1.27


def test_kubelet_phase_of_the_control_plane_left_after_an_interruption() -> None:
    f = facts("one-cp-two-workers.json")
    # kubeadm upgrade apply went through; cp-1's kubelet and the workers did not move yet
    f = replace(f, cluster=replace(f.cluster, version=KubeVersion.parse("v1.28.4")))
    v = KubeVersion.parse("v1.28.4")
    f = set_node(
        f, "cp-1", kubeadm=v, control_plane=ControlPlaneVersions(v, v, v), repo_minor="1.28"
    )
    p = plan(f, "v1.28.4")
    assert order(p) == [
        ("v1.28.4", "cp-1", "control-plane-kubelet"),
        *worker_visits("v1.28.4", "w-1", "w-2"),
    ]
    # repository already at 1.28: refreshed (signing key), then the drain
    assert [s.name for s in p.entries[0].steps[:2]] == ["package-repository", "drain"]


def test_interrupted_ha_upgrade_runs_upgrade_node_not_apply() -> None:
    f = facts("three-cp-dnf.json")
    v = KubeVersion.parse("v1.28.4")
    f = replace(f, cluster=replace(f.cluster, version=v))
    f = set_node(f, "cp-1", kubeadm=v, control_plane=ControlPlaneVersions(v, v, v))
    p = plan(f, "v1.28.4")
    phases = order(p)
    assert ("v1.28.4", "cp-1", "first-control-plane") not in phases
    assert phases[:2] == visits("v1.28.4", "control-plane", "cp-2", "cp-3")
    assert not any(s.name == "kubeadm-upgrade-apply" for s in p.steps)


def test_worker_with_kubeadm_behind_only_is_visited() -> None:
    f = facts("all-at-target.json")
    f = set_node(f, "w-1", kubeadm=KubeVersion.parse("v1.28.3"))
    p = plan(f, "v1.28.4")
    assert order(p) == [("v1.28.4", "w-1", "worker")]


def test_nothing_to_do() -> None:
    p = plan("all-at-target.json", "v1.28.4")
    assert p.entries == ()
    assert p.hops == ()
    assert not p.blockers
    assert p.nothing_to_do


# --------------------------------------------------------------------------- --nodes


def test_nodes_filter_when_control_plane_is_done() -> None:
    p = plan("partially-upgraded.json", "v1.28.4", nodes=("w-2",))
    assert order(p) == [("v1.28.4", "w-2", "worker")]
    assert not p.blockers
    f = set_node(facts("partially-upgraded.json"), "w-1", kubelet=KubeVersion.parse("v1.27.8"))
    p = plan(f, "v1.28.4", nodes=("w-1",))
    assert order(p) == [("v1.28.4", "w-1", "worker")]


def test_nodes_filter_while_control_plane_behind_is_blocked() -> None:
    p = plan("one-cp-two-workers.json", "v1.28.4", nodes=("w-2",))
    assert order(p) == [("v1.28.4", "w-2", "worker")]
    blockers = [f for f in p.blockers if f.code == "CONTROL_PLANE_NOT_AT_TARGET"]
    assert len(blockers) == 1
    assert "cp-1" in blockers[0].message and blockers[0].override is None


@pytest.mark.parametrize(
    ("nodes", "problem"),
    [
        (("w-9",), "--nodes: unknown node 'w-9'"),
        (("cp-1",), "--nodes: cp-1 is a control-plane node"),
        ((), "--nodes: no node names given"),
    ],
)
def test_nodes_filter_errors(nodes: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        plan("one-cp-two-workers.json", "v1.28.4", nodes=nodes)


def test_option_errors() -> None:
    with pytest.raises(ConfigError, match="max-unavailable"):
        plan("one-cp-two-workers.json", "v1.28.4", max_unavailable=0)
    with pytest.raises(ConfigError, match="strategy"):
        plan("one-cp-two-workers.json", "v1.28.4", strategy="yolo")


# --------------------------------------------------------------------------- ids


def test_step_ids_are_unique_and_stable() -> None:
    a = plan("multi-minor-apt.json", "v1.28.4")
    b = plan("multi-minor-apt.json", "v1.28.4")
    ids = [s.id for s in a.steps]
    assert len(ids) == len(set(ids))
    assert ids == [s.id for s in b.steps]
    assert "v1.27.16/w-1/worker/kubeadm-upgrade-node" in ids
    assert "v1.28.4/cp-1/first-control-plane/kubeadm-upgrade-apply" in ids
    assert a == b


# --------------------------------------------------------------------------- packages


def test_exact_package_version_from_facts_is_rendered_literally() -> None:
    p = plan("patch-apt-known.json", "v1.28.4")
    assert order(p) == single_cp_visits("v1.28.4") + worker_visits("v1.28.4", "w-1")
    first = p.entries[0]
    assert first.steps[0].name == "package-repository"  # at 1.28 already: key refreshed
    assert first.steps[1].name == "kubeadm-package"
    assert first.steps[1].command == (
        "apt-get -o DPkg::Lock::Timeout=300 check >/dev/null && apt-mark unhold kubeadm && "
        "{ apt-cache madison kubeadm | grep -qF ' | 1.28.4-' || apt-get update; } && "
        "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=1.28.4-1.1 "
        "&& apt-mark hold kubeadm"
    )
    # the exact version is written in: no command looks it up on the node
    assert "pkgver" not in "".join(s.command or "" for s in p.steps)


def test_version_missing_from_the_listing_is_a_warning() -> None:
    f = facts("patch-apt-known.json")
    for n in ("cp-1", "w-1"):
        f = set_node(f, n, repo_versions=("1.28.3-1.1", "1.28.2-1.1"))
    p = plan(f, "v1.28.4")
    warn = [x for x in p.findings if x.code == "PACKAGE_VERSION_NOT_LISTED"]
    assert [x.node for x in warn] == ["cp-1", "w-1"]
    assert all(x.severity == Severity.WARNING for x in warn)
    assert "madison" in (p.entries[0].steps[1].command or "")
    assert not p.blockers


def test_yum_node_from_facts() -> None:
    f = set_node(facts("three-cp-dnf.json"), "w-1", package_manager="yum")
    p = plan(f, "v1.28.4")
    w = p.entries[-1]
    assert w.node == "w-1"
    assert "yum makecache" in (w.steps[0].command or "")
    assert "yum install -y kubeadm-" in (w.steps[1].command or "")


def test_package_manager_from_the_inventory_map() -> None:
    f = set_node(facts("one-cp-two-workers.json"), "w-2", os_family=None)
    p = plan(f, "v1.28.4", package_manager_by_node={"w-2": "apt"})
    assert not p.blockers


def test_unknown_package_manager_is_a_blocker_but_steps_are_listed() -> None:
    f = set_node(facts("one-cp-two-workers.json"), "w-2", os_family=None)
    p = plan(f, "v1.28.4")
    bl = [x for x in p.blockers if x.code == "PACKAGE_MANAGER_UNKNOWN"]
    assert [x.node for x in bl] == ["w-2"]
    w2 = p.entries[-1]
    assert w2.node == "w-2"
    assert w2.steps[1].kind == "shell" and w2.steps[1].command is None
    f = set_node(facts("one-cp-two-workers.json"), "w-2", package_manager="zypper")
    p = plan(f, "v1.28.4")
    assert "'zypper'" in next(x for x in p.blockers if x.code == "PACKAGE_MANAGER_UNKNOWN").message


def test_package_manager_mismatch_is_a_blocker() -> None:
    p = plan("three-cp-dnf.json", "v1.28.4", package_manager_by_node={"w-1": "apt"})
    assert not p.blockers  # the facts know: dnf
    f = set_node(facts("three-cp-dnf.json"), "w-1", package_manager=None)
    p = plan(f, "v1.28.4", package_manager_by_node={"w-1": "apt"})
    bl = [x for x in p.blockers if x.code == "PACKAGE_MANAGER_MISMATCH"]
    assert [x.node for x in bl] == ["w-1"]
    assert "inventory" in bl[0].message and "rhel" in bl[0].message


def test_playbook_without_a_command_for_the_node_is_a_blocker(tmp_path: Path) -> None:
    pb = with_site_shell_step(tmp_path, "post", "apt-only", {"apt": "apt-get autoremove -y"})
    p = plan("three-cp-dnf.json", "v1.28.4", pb)
    bl = [x for x in p.blockers if x.code == "PLAYBOOK_NO_COMMAND"]
    assert [x.node for x in bl] == ["w-1"]
    assert "worker/apt-only" in bl[0].message and "site.yaml" in bl[0].message


def test_legacy_repository_has_no_repository_switch() -> None:
    p = plan("one-cp-two-workers.json", "v1.28.4", repository=RepoConfig("legacy"))
    assert all(s.name != "package-repository" for s in p.steps)


def test_custom_repository_url_in_the_switch() -> None:
    repo = RepoConfig("custom", "https://mirror.example/k8s/v{minor}/deb/")
    p = plan("one-cp-two-workers.json", "v1.28.4", repository=repo)
    cmd = p.entries[0].steps[0].command or ""
    assert "https://mirror.example/k8s/v1.28/deb/Release.key" in cmd


def test_unknown_repository_minor_switches_to_be_sure() -> None:
    f = set_node(facts("patch-apt-known.json"), "w-1", repo_minor=None)
    p = plan(f, "v1.28.4")
    w1 = next(e for e in p.entries if e.node == "w-1")
    assert w1.steps[0].name == "package-repository"


# --------------------------------------------------------------------------- findings


def test_unreachable_node_findings_are_kept_and_added() -> None:
    f = facts("one-cp-two-workers.json")
    gathered = Finding(
        "NODE_UNREACHABLE", Severity.BLOCKER, "w-1: ssh: connection refused", node="w-1"
    )
    f = replace(f, findings=(gathered,))
    f = set_node(f, "w-1", reachable=False, kubelet=None, kubeadm=None)
    f = set_node(f, "w-2", reachable=False)
    p = plan(f, "v1.28.4")
    unreachable = [x for x in p.blockers if x.code == "NODE_UNREACHABLE"]
    assert [x.node for x in unreachable] == ["w-1", "w-2"]
    assert unreachable[0] is gathered  # from the facts, not duplicated
    assert ("v1.28.4", "w-1", "worker") in order(p)
    # the text lists no steps for a node it could not reach (they would be guesses)
    from upgrader.core.render import render_text

    text = render_text(p)
    assert "[v1.28.4] w-1 (worker, worker)\n      (not reached, NODE_UNREACHABLE" in text
    assert "Drain w-1" not in text and "Drain w-2" not in text
    assert "Upgrade the control plane to v1.28.4" in text  # cp-1 was reached


def _unreached(f: Facts, name: str) -> Facts:
    """``f`` with node ``name`` as gathering leaves a node it could not reach and the API
    does not know: every fact missing, ``reachable`` false, NODE_UNREACHABLE recorded."""
    from upgrader.core.model import NodeFacts

    gathered = Finding(
        "NODE_UNREACHABLE", Severity.BLOCKER, f"node {name}: connection refused", node=name
    )
    nodes = tuple(
        NodeFacts(name=n.name, role=n.role, address=n.address, reachable=False)
        if n.name == name
        else n
        for n in f.nodes
    )
    return replace(f, nodes=nodes, findings=(*f.findings, gathered))


@pytest.mark.parametrize(
    ("facts_file", "node"), [("one-cp-two-workers.json", "w-1"), ("three-cp-dnf.json", "cp-2")]
)
def test_an_unreached_node_has_one_finding_and_none_caused_by_its_missing_facts(
    facts_file: str, node: str
) -> None:
    """Its kubelet version, package manager and control-plane versions are unknown because
    it was not reached: NODE_UNREACHABLE says so once, with no KUBELET_VERSION_UNKNOWN
    (which offered --force), PACKAGE_MANAGER_UNKNOWN or CONTROL_PLANE_VERSION_UNKNOWN."""
    p = plan(_unreached(facts(facts_file), node), "v1.28.4")
    about = [(x.code, x.severity) for x in p.findings if x.node == node]
    assert about == [("NODE_UNREACHABLE", Severity.BLOCKER)]
    assert not any(x.override for x in p.blockers)  # nothing offers a flag for it


def test_a_reached_node_with_missing_facts_keeps_its_findings() -> None:
    f = set_node(facts("one-cp-two-workers.json"), "w-1", kubelet=None, package_manager=None)
    f = set_node(f, "w-1", os_family=None)
    p = plan(f, "v1.28.4")
    about = {x.code for x in p.findings if x.node == "w-1"}
    assert {"KUBELET_VERSION_UNKNOWN", "PACKAGE_MANAGER_UNKNOWN"} <= about


def test_preflight_checks_add_nothing_about_an_unreached_node() -> None:
    from upgrader.planning import PlanRequest, make_plan

    f = _unreached(facts("three-cp-dnf.json"), "cp-2")
    p = make_plan(f, PlanRequest(target=KubeVersion.parse("v1.28.4"), today=TODAY))
    about = [x.code for x in p.findings if x.node == "cp-2"]
    assert about == ["NODE_UNREACHABLE"]


def test_catch_up_hop_brings_a_lagging_kubelet_to_the_cluster_version_first() -> None:
    f = set_node(facts("one-cp-two-workers.json"), "w-1", kubelet=KubeVersion.parse("v1.26.5"))
    p = plan(f, "v1.28.4")
    assert [str(h) for h in p.hops] == ["v1.27.8", "v1.28.4"]
    assert "CATCH_UP_HOP" in codes(p, Severity.INFO)
    assert order(p) == worker_visits("v1.27.8", "w-1") + one_cp_two_workers("v1.28.4")
    catch_up = p.entries[0]
    # already at 1.27: the repository step refreshes the key, the list stays at 1.27
    repo_steps = [s for s in catch_up.steps if s.name == "package-repository"]
    assert len(repo_steps) == 1 and "/v1.27/" in (repo_steps[0].command or "")
    assert not p.blockers


def test_policy_findings_come_through_with_overrides() -> None:
    f = set_node(facts("one-cp-two-workers.json"), "w-1", kubelet=None)
    p = plan(f, "v1.28.4")
    assert [(x.code, x.override) for x in p.blockers] == [("KUBELET_VERSION_UNKNOWN", "--force")]
    forced = plan(
        f,
        "v1.28.4",
        policy=PolicyOptions(today=TODAY, force=True),
        overrides=("--force",),
    )
    assert "--force" in forced.overrides
    assert not [x for x in forced.blockers if x.override == "--force"]


def test_plan_overrides_include_the_policy_flags() -> None:
    p = plan(
        "one-cp-two-workers.json",
        "v1.28.4",
        policy=PolicyOptions(today=TODAY, allow_unsupported=True),
    )
    assert p.overrides == ("--allow-unsupported",)


def test_to_dict_shape() -> None:
    d = plan("one-cp-two-workers.json", "v1.28.4").to_dict()
    assert d["current"] == "v1.27.8" and d["target"] == "v1.28.4" and d["hops"] == ["v1.28.4"]
    assert [n["name"] for n in d["nodes"]] == ["cp-1", "cp-1", "w-1", "w-2"]
    step = d["nodes"][0]["steps"][0]
    assert set(step) >= {"id", "kind", "command", "check", "description", "retry_safe"}
    assert d["blocked"] is False
    json.dumps(d)


# --------------------------------------------------------------------------- kubeadm flags


def _apply_commands(p: Plan) -> list[str | None]:
    return [s.command for s in p.steps if s.name == "kubeadm-upgrade-apply"]


def test_force_that_passes_kubeadms_kubelet_rule_reaches_kubeadm_upgrade_apply() -> None:
    """kubeadm <= 1.28 refuses a kubelet more than one minor below the target (policy.go);
    the skew policy allows three. With --force the plan passes that refusal instead of a
    catch-up hop, and kubeadm gets the same flag (else it refuses what upgrader allowed)."""
    f = set_node(facts("one-cp-two-workers.json"), "w-1", kubelet=KubeVersion.parse("v1.25.16"))
    strict = plan(f, "v1.28.4")
    assert [str(h) for h in strict.hops] == ["v1.27.8", "v1.28.4"]  # catch-up first
    assert _apply_commands(strict) == ["kubeadm upgrade apply v1.28.4 -y"]
    forced = plan(f, "v1.28.4", policy=PolicyOptions(today=TODAY, force=True))
    assert [str(h) for h in forced.hops] == ["v1.28.4"]
    assert _apply_commands(forced) == ["kubeadm upgrade apply v1.28.4 -y --force"]
    passed = [x for x in forced.findings if x.code == "KUBEADM_KUBELET_TOO_OLD"]
    assert [(x.severity, x.override, x.node) for x in passed] == [
        (Severity.WARNING, "--force", "w-1")
    ]
    step = next(s for s in forced.steps if s.name == "kubeadm-upgrade-apply")
    assert step.description.endswith("with kubeadm upgrade apply --force")


def test_force_given_for_something_else_stays_off_the_kubeadm_command_line() -> None:
    p = plan("one-cp-two-workers.json", "v1.28.4", policy=PolicyOptions(today=TODAY, force=True))
    assert _apply_commands(p) == ["kubeadm upgrade apply v1.28.4 -y"]


@pytest.mark.parametrize(
    ("target", "opts", "flag"),
    [
        ("v1.28.0-rc.1", {"allow_release_candidate": True}, " --allow-release-candidate-upgrades"),
        ("v1.28.0-rc.1", {"allow_experimental": True}, " --allow-experimental-upgrades"),
        ("v1.28.0-beta.0", {"allow_experimental": True}, " --allow-experimental-upgrades"),
    ],
)
def test_a_pre_release_hop_carries_the_opt_in_the_operator_gave(
    target: str, opts: dict[str, bool], flag: str
) -> None:
    p = plan("one-cp-two-workers.json", target, policy=PolicyOptions(today=TODAY, **opts))
    assert "PRERELEASE_TARGET" not in codes(p, Severity.BLOCKER)
    assert _apply_commands(p) == [f"kubeadm upgrade apply {target} -y{flag}"]


def test_images_are_pulled_from_the_clusters_image_repository() -> None:
    f = facts("one-cp-two-workers.json")
    f = replace(f, cluster=replace(f.cluster, image_repository="mirror.example.test/k8s"))
    p = plan(f, "v1.28.4")
    pulls = [s.command for s in p.steps if s.name == "pull-images"]
    assert pulls == [
        "kubeadm config images pull --kubernetes-version v1.28.4 "
        "--image-repository mirror.example.test/k8s"
    ]
    names = [s.name for s in p.entries[0].steps]
    assert names.index("pull-images") == names.index("kubeadm-package") + 1


# --------------------------------------------------------------------------- half-upgraded HA


def _half_upgraded_ha() -> Facts:
    """The kubeadm upgrade page's order stopped after cp-1: `kubeadm upgrade apply
    v1.28.4` ran there and cp-1's kubelet and kubectl were upgraded; cp-2, cp-3 and the
    worker are still at v1.27.8 (so cp-1's kubelet is newer than cp-2's kube-apiserver)."""
    f = facts("three-cp-dnf.json")
    v = KubeVersion.parse("v1.28.4")
    cp1 = f.node("cp-1")
    assert cp1.control_plane is not None
    done = ControlPlaneVersions(apiserver=v, controller_manager=v, scheduler=v)
    f = set_node(f, "cp-1", kubelet=v, kubectl=v, kubeadm=v, control_plane=done)
    return replace(f, cluster=replace(f.cluster, version=v))


def test_a_half_upgraded_ha_cluster_is_finished_with_a_warning() -> None:
    p = plan(_half_upgraded_ha(), "v1.28.4")
    assert not p.blockers, [x.message for x in p.blockers]
    too_new = [x for x in p.findings if x.code == "SKEW_KUBELET_TOO_NEW"]
    assert [(x.severity, x.node) for x in too_new] == [(Severity.WARNING, "cp-1")]
    assert "the plan's control-plane steps resolve it: cp-2, cp-3 moved to v1.28.4 first" in (
        too_new[0].message
    )
    assert order(p) == [
        *visits("v1.28.4", "control-plane", "cp-2", "cp-3"),
        *visits("v1.28.4", "control-plane-kubelet", "cp-2", "cp-3"),
        ("v1.28.4", "w-1", "worker"),
    ]


def test_a_kubelet_newer_than_the_plan_brings_the_control_plane_stays_a_blocker() -> None:
    f = _half_upgraded_ha()
    f = set_node(f, "w-1", kubelet=KubeVersion.parse("v1.29.5"))  # newer than the target
    p = plan(f, "v1.28.4")
    blockers = [(x.code, x.node) for x in p.blockers]
    assert ("SKEW_KUBELET_TOO_NEW", "w-1") in blockers
    assert ("SKEW_KUBELET_TOO_NEW", "cp-1") not in blockers


def test_the_image_repository_fact_round_trips_through_json() -> None:
    f = facts("one-cp-two-workers.json")
    assert "image_repository" not in f.to_dict()["cluster"]  # unknown: not written
    g = replace(f, cluster=replace(f.cluster, image_repository="mirror.example.test/k8s"))
    assert Facts.from_dict(g.to_dict()).cluster.image_repository == "mirror.example.test/k8s"
