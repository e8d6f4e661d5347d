"""Which workers a run upgrades and in which groups and order (upgrader/core/workers.py),
through the planner (``--selector``, ``--nodes``, ``--group-by``, ``--order-by``,
``--max-unavailable-per-group``), the engine's batches per group, the canary with groups,
the stored plan (a resume keeps the selection) and the facts' labels."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from refusal import refusal
from test_engine import MemKube, MemNode, Rig, entry, meet, shell, worker_visit

from upgrader import state as st
from upgrader.core.model import Facts, NodeFacts, Plan, PlanEntry
from upgrader.core.planner import PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.versions import KubeVersion
from upgrader.core.workers import WorkerSelection, group_rounds, missing_group, order_workers
from upgrader.errors import ConfigError
from upgrader.execute import events as ev
from upgrader.execute import stored
from upgrader.execute.engine import batches

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
ZONE = "topology.kubernetes.io/zone"
# inventory order w-1 .. w-6; zones a, b, a, b, (none), a; rack: ordering label
LABELS: dict[str, dict[str, str]] = {
    "w-1": {ZONE: "a", "rack": "3", "tier": "web"},
    "w-2": {ZONE: "b", "rack": "1", "tier": "web"},
    "w-3": {ZONE: "a", "rack": "1", "tier": "batch"},
    "w-4": {ZONE: "b", "rack": "2"},
    "w-5": {"rack": "0", "tier": "web"},
    "w-6": {ZONE: "a", "rack": "2", "tier": "batch"},
}


def six_workers() -> Facts:
    """one-cp-two-workers.json with six labelled workers (copies of its w-1)."""
    f = Facts.from_dict(json.loads((DATA / "one-cp-two-workers.json").read_text()), "facts")
    cp = next(n for n in f.nodes if n.is_control_plane)
    w1 = next(n for n in f.nodes if n.name == "w-1")
    cp = replace(cp, labels={"node-role.kubernetes.io/control-plane": "", ZONE: "a"})
    ws = [replace(w1, name=name, labels=labels) for name, labels in LABELS.items()]
    return replace(f, nodes=(cp, *ws))


def plan(f: Facts | None = None, **kw: Any) -> Plan:
    return build_plan(
        f or six_workers(),
        KubeVersion.parse("v1.28.4"),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), **kw),
    )


def workers_in_order(p: Plan) -> list[str]:
    return list(
        dict.fromkeys(e.node for e in p.entries if e.role == "worker" and e.phase != "prestage")
    )


def sel(**kw: Any) -> tuple[list[str], WorkerSelection]:
    return order_workers(six_workers().workers, WorkerSelection(**kw))


# --------------------------------------------------------------------------- selection


def test_selector_keeps_the_matching_workers_in_inventory_order() -> None:
    order, s = sel(selector=f"{ZONE}=a")
    assert order == ["w-1", "w-3", "w-6"]
    assert (s.selected, s.total) == (3, 6)
    order, _ = sel(selector="!" + ZONE)
    assert order == ["w-5"]
    order, _ = sel(selector=f"{ZONE} notin (a),tier")
    assert order == ["w-2", "w-5"]


def test_selector_with_nodes_is_the_intersection() -> None:
    order, s = sel(selector="tier=web", nodes=("w-1", "w-3", "w-5"))
    assert order == ["w-1", "w-5"] and s.selected == 2
    with pytest.raises(ConfigError) as info:
        sel(selector="tier=web", nodes=("w-3", "w-4"))
    msg = str(info.value)
    assert msg.startswith("--selector: tier=web matches no worker among the workers --nodes names")
    assert "w-3, w-4" in msg and "\n" not in msg


def test_selector_matching_no_worker_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^--selector: zone=c matches no worker"):
        sel(selector="zone=c")


def test_selector_matching_only_the_control_plane_matches_no_worker() -> None:
    # cp-1 carries the control-plane role label: the selector chooses among workers only
    with pytest.raises(ConfigError, match="matches no worker"):
        plan(selector="node-role.kubernetes.io/control-plane")


def test_order_by_sorts_by_the_label_then_the_name_missing_last() -> None:
    order, _ = sel(order_by="rack")
    assert order == ["w-5", "w-2", "w-3", "w-4", "w-6", "w-1"]
    order, _ = sel(order_by="tier")  # w-4 has no tier: last
    assert order == ["w-3", "w-6", "w-1", "w-2", "w-5", "w-4"]


# --------------------------------------------------------------------------- groups


def test_groups_by_label_sorted_with_the_unlabelled_group_last_and_named() -> None:
    order, s = sel(group_by=ZONE)
    assert dict(s.groups) == {
        "a": ("w-1", "w-3", "w-6"),
        "b": ("w-2", "w-4"),
        missing_group(ZONE): ("w-5",),
    }
    assert missing_group(ZONE) == f"(no {ZONE})"
    # rounds of one node of each group
    assert order == ["w-1", "w-2", "w-5", "w-3", "w-4", "w-6"]
    assert s.group_of()["w-5"] == missing_group(ZONE)


def test_groups_ordered_within_by_order_by_and_rounds_of_per_group() -> None:
    order, s = sel(group_by=ZONE, order_by="rack", per_group=2)
    assert dict(s.groups)["a"] == ("w-3", "w-6", "w-1")
    assert dict(s.groups)["b"] == ("w-2", "w-4")
    assert order == ["w-3", "w-6", "w-2", "w-4", "w-5", "w-1"]


def test_group_rounds() -> None:
    groups = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    assert group_rounds(groups, 1) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert group_rounds(groups, 2) == ["a1", "a2", "b1", "c1", "c2", "a3"]
    assert group_rounds({}, 1) == []


def test_selector_then_groups() -> None:
    order, s = sel(selector="tier", group_by=ZONE)
    assert dict(s.groups) == {"a": ("w-1", "w-3", "w-6"), "b": ("w-2",), f"(no {ZONE})": ("w-5",)}
    assert order == ["w-1", "w-2", "w-5", "w-3", "w-6"]


# --------------------------------------------------------------------------- the planner


def test_plan_visits_only_the_selected_workers_after_the_control_plane() -> None:
    p = plan(selector=f"{ZONE}=b")
    phases = [(e.node, e.phase) for e in p.entries if e.phase != "prestage"]
    assert phases[0][0] == "cp-1"
    assert workers_in_order(p) == ["w-2", "w-4"]
    assert not any(f.node in {"w-1", "w-3", "w-5", "w-6"} for f in p.findings)
    d = p.to_dict()["workers"]
    assert d["selector"] == f"{ZONE}=b" and (d["selected"], d["total"]) == (2, 6)


def test_plan_orders_the_workers_in_group_rounds() -> None:
    p = plan(group_by=ZONE)
    assert workers_in_order(p) == ["w-1", "w-2", "w-5", "w-3", "w-4", "w-6"]
    assert p.selection is not None and p.selection.group_by == ZONE
    assert p.to_dict()["workers"]["groups"]["b"] == ["w-2", "w-4"]


def test_plan_without_selection_options_is_as_before() -> None:
    p = plan()
    assert workers_in_order(p) == list(LABELS)
    assert "workers" not in p.to_dict()


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        ({"group_by": ZONE, "max_unavailable": 2}, "--group-by: not with --max-unavailable"),
        ({"max_unavailable_per_group": 2}, "--max-unavailable-per-group: needs --group-by"),
        ({"group_by": ZONE, "max_unavailable_per_group": 0}, "must be at least 1"),
        ({"group_by": "-zone"}, "--group-by: invalid label key '-zone'"),
        ({"order_by": "a/b/c"}, "--order-by: invalid label key"),
        ({"selector": "zone in (a"}, "--selector: "),
    ],
)
def test_option_errors(kw: dict[str, Any], problem: str) -> None:
    assert problem in refusal(plan, **kw)


# --------------------------------------------------------------------------- batches


def visits(*nodes: str) -> list[PlanEntry]:
    return [entry(n, []) for n in nodes]


def names(bs: list[list[PlanEntry]]) -> list[list[str]]:
    return [[e.node for e in b] for b in bs]


def test_batches_take_up_to_per_group_nodes_of_every_group() -> None:
    _, s = sel(group_by=ZONE)
    order = ["w-1", "w-2", "w-5", "w-3", "w-4", "w-6"]
    cp = entry("cp-1", [], role="control-plane", phase="first-control-plane")
    assert names(batches([cp, *visits(*order)], 1, s.group_of(), 1)) == [
        ["cp-1"],
        ["w-1", "w-2", "w-5"],
        ["w-3", "w-4"],
        ["w-6"],
    ]
    _, s2 = sel(group_by=ZONE, per_group=2)
    order2 = ["w-1", "w-3", "w-2", "w-4", "w-5", "w-6"]
    assert names(batches(visits(*order2), 1, s2.group_of(), 2)) == [
        ["w-1", "w-3", "w-2", "w-4", "w-5"],
        ["w-6"],
    ]


def test_every_batch_has_at_most_per_group_nodes_of_a_group() -> None:
    for per in (1, 2, 3):
        order, s = sel(group_by=ZONE, per_group=per)
        groups = s.group_of()
        bs = batches(visits(*order), 1, groups, per)
        assert sorted(e.node for b in bs for e in b) == sorted(order)
        for b in bs:
            for g in set(groups.values()):
                assert sum(groups[e.node] == g for e in b) <= per


# --------------------------------------------------------------------------- the engine


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, MemKube({n: MemNode() for n in ("cp-1", "w-1", "w-2", "w-3", "w-4")}))


def down_at_once(events: list[ev.Event]) -> list[set[str]]:
    """The set of cordoned nodes after each cordon event (events in emission order)."""
    down: set[str] = set()
    out = []
    for e in events:
        if e.kind == ev.NODE_CORDONED and e.node:
            down.add(e.node)
            out.append(set(down))
        elif e.kind == ev.NODE_UNCORDONED and e.node:
            down.discard(e.node)
    return out


def test_engine_runs_one_node_of_each_group_at_once(rig: Rig) -> None:
    # zone a: w-1, w-3; zone b: w-2, w-4; plan order in rounds. Both nodes of a round
    # must be in their visit together: each waits (bounded) for the other's marker.
    groups = {"w-1": "a", "w-3": "a", "w-2": "b", "w-4": "b"}
    entries = [
        worker_visit("w-1", extra=[meet(rig, "w-1", "w-2")]),
        worker_visit("w-2", extra=[meet(rig, "w-2", "w-1")]),
        worker_visit("w-3", extra=[meet(rig, "w-3", "w-4")]),
        worker_visit("w-4", extra=[meet(rig, "w-4", "w-3")]),
    ]
    s = rig.engine(entries, groups=groups, per_group=1).run()
    assert s.status == st.RunStatus.SUCCEEDED
    downs = down_at_once(rig.events)
    assert max(len(d) for d in downs) == 2
    for d in downs:  # never two of one zone
        assert len({groups[n] for n in d}) == len(d)


def test_canary_runs_alone_before_the_groups(rig: Rig) -> None:
    groups = {"w-1": "a", "w-3": "a", "w-2": "b", "w-4": "b"}
    cp = entry(
        "cp-1",
        [shell("cp-1", "a", "echo cp >> log", phase="first-control-plane")],
        "control-plane",
        "first-control-plane",
    )
    entries = [cp, *(worker_visit(n) for n in ("w-1", "w-2", "w-3", "w-4"))]
    s = rig.engine(entries, canary=1, groups=groups, per_group=1).run()
    assert s.status == st.RunStatus.PAUSED
    assert rig.log("w-1") and not any(rig.log(n) for n in ("w-2", "w-3", "w-4"))
    assert max(len(d) for d in down_at_once(rig.events)) == 1
    rig.events.clear()
    s = rig.engine(entries, canary=1, groups=groups, per_group=1).run()
    assert s.status == st.RunStatus.SUCCEEDED
    assert all(rig.log(n) == ["kubeadm", "kubelet"] for n in ("w-2", "w-3", "w-4"))
    for d in down_at_once(rig.events):
        assert len({groups[n] for n in d}) == len(d)


# --------------------------------------------------------------------------- records


def test_the_stored_plan_keeps_the_selection_for_a_resume() -> None:
    p = plan(selector="tier", group_by=ZONE, order_by="rack")
    sp = stored.StoredPlan.of(p, "run-1")
    back = stored.from_dict(json.loads(json.dumps(sp.to_dict())), "plan.json")
    assert back.selection == p.selection
    assert back.selection is not None and back.selection.group_of()["w-5"] == f"(no {ZONE})"
    # a plan without any of the options stores none (as plans stored before them)
    plain = stored.StoredPlan.of(plan(), "run-2")
    assert "workers" not in plain.to_dict()
    assert stored.from_dict(plain.to_dict(), "plan.json").selection is None


def test_a_malformed_stored_selection_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^plan\.json: workers: .*malformed"):
        WorkerSelection.from_dict({"nodes": "w-1"}, "plan.json: workers")


def test_facts_keep_the_labels_and_older_facts_files_still_load() -> None:
    f = six_workers()
    back = Facts.from_dict(json.loads(json.dumps(f.to_dict())), "facts")
    assert {n.name: dict(n.labels) for n in back.workers} == LABELS
    for name in ("one-cp-two-workers.json", "three-cp-dnf.json", "partially-upgraded.json"):
        old = Facts.from_dict(json.loads((DATA / name).read_text()), name)
        assert all(n.labels == {} for n in old.nodes)
    raw = f.to_dict()
    raw["nodes"][1]["labels"] = {"zone": 1}
    with pytest.raises(ValueError, match=r"labels: must be a mapping of strings"):
        Facts.from_dict(raw, "facts")


def test_node_facts_labels_default_empty() -> None:
    assert NodeFacts(name="w-9", role="worker").labels == {}
