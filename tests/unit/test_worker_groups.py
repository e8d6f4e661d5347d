"""Choosing, grouping and ordering workers by Node labels: the pure choice
(upgrader.core.workers), the planner's order and findings, the executor's batches per
group (with --canary), the plan's text and JSON, and the stored plan that a resume reads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from refusal import refusal
from test_canary import cp
from test_engine import MemKube, MemNode, Rig, entry, worker_visit
from test_planner import facts, order, plan, single_cp_visits, worker_visits

from upgrader import state as st
from upgrader.core.model import Facts, NodeFacts
from upgrader.core.render import render_text
from upgrader.core.render_brief import render_brief
from upgrader.core.workers import WorkerSelection, group_rounds, order_workers
from upgrader.errors import ConfigError
from upgrader.execute import stored
from upgrader.execute.engine import batches
from upgrader.inventory import load_inventory

LABELS = {
    "w-1": {"zone": "a", "rack": "2"},
    "w-2": {"zone": "b", "rack": "1"},
    "w-3": {"zone": "a", "rack": "1"},
    "w-4": {"zone": "b", "rack": "3"},
    "w-5": {"rack": "1"},
}


def workers(names: tuple[str, ...] = ("w-1", "w-2", "w-3", "w-4", "w-5")) -> list[NodeFacts]:
    return [NodeFacts(name=n, role="worker", labels=LABELS[n]) for n in names]


def labelled(name: str = "one-cp-two-workers.json") -> Facts:
    """A 1.27 cluster of cp-1 and w-1..w-4 (w-3, w-4 copies of w-2) with LABELS."""
    f = facts(name)
    w2 = f.node("w-2")
    extra = tuple(replace(w2, name=n) for n in ("w-3", "w-4"))
    nodes = tuple(
        replace(n, labels=LABELS.get(n.name, {"node-role.kubernetes.io/control-plane": ""}))
        for n in (*f.nodes, *extra)
    )
    return replace(f, nodes=nodes)


# --------------------------------------------------------------------------- the choice


def test_selector_chooses_workers_in_inventory_order() -> None:
    names, sel = order_workers(workers(), WorkerSelection(selector="zone=a"))
    assert names == ["w-1", "w-3"]
    assert (sel.selected, sel.total) == (2, 5)
    names, _ = order_workers(workers(), WorkerSelection(selector="zone notin (a)"))
    assert names == ["w-2", "w-4", "w-5"]


def test_selector_with_nodes_is_the_intersection() -> None:
    names, sel = order_workers(
        workers(), WorkerSelection(nodes=("w-1", "w-2"), selector="zone in (a,b)")
    )
    assert names == ["w-1", "w-2"] and sel.selected == 2
    names, _ = order_workers(workers(), WorkerSelection(nodes=("w-2", "w-3"), selector="zone=a"))
    assert names == ["w-3"]


def test_selector_matching_no_worker_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        order_workers(workers(), WorkerSelection(selector="zone=c"))
    assert str(info.value).startswith("--selector: zone=c matches no worker (checked: w-1, ")
    with pytest.raises(ConfigError, match="among the workers --nodes names"):
        order_workers(workers(), WorkerSelection(nodes=("w-2",), selector="zone=a"))


def test_groups_interleave_in_rounds_and_unlabelled_nodes_group_last() -> None:
    names, sel = order_workers(workers(), WorkerSelection(group_by="zone"))
    assert dict(sel.groups) == {
        "a": ("w-1", "w-3"),
        "b": ("w-2", "w-4"),
        "(no zone)": ("w-5",),
    }
    assert names == ["w-1", "w-2", "w-5", "w-3", "w-4"]
    names, _ = order_workers(workers(), WorkerSelection(group_by="zone", per_group=2))
    assert names == ["w-1", "w-3", "w-2", "w-4", "w-5"]
    assert group_rounds({"a": ["1", "2", "3"], "b": ["4"]}, 2) == ["1", "2", "4", "3"]


def test_order_by_sorts_by_the_label_then_the_name_within_groups() -> None:
    names, _ = order_workers(workers(), WorkerSelection(order_by="rack"))
    assert names == ["w-2", "w-3", "w-5", "w-1", "w-4"]
    names, sel = order_workers(workers(), WorkerSelection(group_by="zone", order_by="rack"))
    assert sel.groups["a"] == ("w-3", "w-1")
    assert names == ["w-3", "w-2", "w-5", "w-1", "w-4"]


# --------------------------------------------------------------------------- the plan


def test_plan_with_selector_keeps_the_control_plane_first_and_only_matching_workers() -> None:
    p = plan(labelled(), "v1.28.4", selector="zone=a")
    assert order(p) == single_cp_visits("v1.28.4") + worker_visits("v1.28.4", "w-1", "w-3")
    assert not p.blockers
    data = p.to_dict()["workers"]
    assert data["selector"] == "zone=a" and data["selected"] == 2 and data["total"] == 4
    text = render_brief(p)
    assert "Workers: 2 of 4 selected by zone=a; order: inventory order\n" in text
    assert "Workers: 2 of 4 selected by zone=a" in render_text(p)


def test_plan_groups_show_the_groups_and_the_order() -> None:
    p = plan(labelled(), "v1.28.4", group_by="zone")
    assert [e.node for e in p.entries if e.phase == "worker"] == ["w-1", "w-2", "w-3", "w-4"]
    line = (
        "Workers: 4 of 4; groups by zone: a (w-1, w-3), b (w-2, w-4); at most 1 down per "
        "group; order within a group: inventory order"
    )
    assert line in " ".join(render_brief(p).split())  # the brief wraps at 120 columns
    assert "workers, groups by zone side by side, at most 1 of a group at once" in render_brief(p)
    assert p.to_dict()["workers"]["groups"] == {"a": ["w-1", "w-3"], "b": ["w-2", "w-4"]}
    # a plan without any of these options says nothing new
    assert "workers" not in plan(labelled(), "v1.28.4").to_dict()
    assert "Workers:" not in render_brief(plan(labelled(), "v1.28.4"))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"selector": "zone=c"}, "--selector: zone=c matches no worker"),
        (
            {"selector": "zone in ()"},
            "--selector: empty set of values after 'zone in' in 'zone in ()'",
        ),
        ({"group_by": "zone", "max_unavailable": 2}, "--group-by: not with --max-unavailable"),
        ({"max_unavailable_per_group": 2}, "--max-unavailable-per-group: needs --group-by"),
        ({"group_by": "bad key"}, "--group-by: invalid label key"),
        ({"order_by": "-x"}, "--order-by: invalid label key"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, object], problem: str) -> None:
    assert problem in refusal(plan, labelled(), "v1.28.4", **options)


def test_facts_labels_round_trip_and_old_facts_files_still_load() -> None:
    f = labelled()
    again = Facts.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again.node("w-4").labels == {"zone": "b", "rack": "3"}
    for p in sorted((Path(__file__).parents[1] / "data" / "facts").glob("*.json")):
        if p.name != "releases.json":
            assert all(n.labels == {} for n in facts(p.name).nodes)
    bad = f.to_dict()
    bad["nodes"][1]["labels"] = {"zone": 1}
    with pytest.raises(ValueError, match=r"nodes\[1\].labels: must be a mapping of strings"):
        Facts.from_dict(bad)


def test_stored_plan_keeps_the_selection_for_a_resume(tmp_path: Path) -> None:
    p = plan(labelled(), "v1.28.4", selector="zone in (a,b)", group_by="zone")
    path = tmp_path / "s.plan.json"
    digest = stored.save(path, stored.StoredPlan.of(p, "run1"))
    back = stored.load(path, "run1", digest)
    assert back.selection is not None
    assert back.selection.selector == "zone in (a,b)" and back.selection.group_by == "zone"
    assert back.selection.group_of() == {"w-1": "a", "w-3": "a", "w-2": "b", "w-4": "b"}
    # a plan without a selection stores none (files of earlier versions read the same)
    plain = stored.StoredPlan.of(plan(labelled(), "v1.28.4"), "run2")
    assert "workers" not in plain.to_dict()


# --------------------------------------------------------------------------- batches


def test_batches_take_up_to_n_of_every_group() -> None:
    c = entry("cp-1", [], role="control-plane", phase="first-control-plane")
    ws = [entry(n, []) for n in ("w-1", "w-2", "w-5", "w-3", "w-4")]
    groups = {"w-1": "a", "w-3": "a", "w-2": "b", "w-4": "b", "w-5": "(no zone)"}
    got = [[e.node for e in b] for b in batches([c, *ws], 1, groups, 1)]
    assert got == [["cp-1"], ["w-1", "w-2", "w-5"], ["w-3", "w-4"]]
    ws2 = [entry(n, []) for n in ("w-1", "w-3", "w-2", "w-4")]
    got = [[e.node for e in b] for b in batches(ws2, 1, groups, 2)]
    assert got == [["w-1", "w-3", "w-2", "w-4"]]
    got = [[e.node for e in b] for b in batches(ws2, 1, groups, 1)]
    assert got == [["w-1"], ["w-3", "w-2"], ["w-4"]]  # never two of group a at once


def test_group_batches_run_together_and_the_canary_runs_alone_first(tmp_path: Path) -> None:
    rig = Rig(tmp_path, MemKube({n: MemNode() for n in ("cp-1", "w-1", "w-2", "w-3", "w-4")}))
    entries = [cp(), *(worker_visit(n) for n in ("w-1", "w-2", "w-3", "w-4"))]
    groups = {"w-1": "a", "w-3": "a", "w-2": "b", "w-4": "b"}
    seen: list[list[str]] = []
    engine = rig.engine(entries, canary=1, groups=groups, per_group=1)
    engine._before_batch = lambda batch: seen.append([e.node for e in batch])
    assert engine.run().status == st.RunStatus.PAUSED
    assert rig.log("w-1") and not rig.log("w-2")
    engine = rig.engine(entries, canary=1, groups=groups, per_group=1)
    engine._before_batch = lambda batch: seen.append([e.node for e in batch])
    assert engine.run().status == st.RunStatus.SUCCEEDED
    # past the canary the rounds are a, b: w-1 (done, not run again) with w-2, then w-3, w-4
    assert seen == [["cp-1"], ["w-1"], ["w-1", "w-2"], ["w-3", "w-4"]]
    assert all(rig.log(n) == ["kubeadm", "kubelet"] for n in ("w-1", "w-2", "w-3", "w-4"))


def test_groups_name_only_the_workers_the_plan_visits() -> None:
    f = facts("partially-upgraded.json")  # w-1 is at v1.28.4 already, w-2 is not
    f = replace(f, nodes=tuple(replace(n, labels=LABELS.get(n.name, {})) for n in f.nodes))
    p = plan(f, "v1.28.4", group_by="zone")
    assert [e.node for e in p.entries if e.phase == "worker"] == ["w-2"]
    assert p.selection is not None and dict(p.selection.groups) == {"b": ("w-2",)}
    assert "groups by zone: b (w-2);" in render_brief(p)


# --------------------------------------------------------------------------- inventories


def _kubespray(tmp_path: Path, all_vars: dict[str, object]) -> Path:
    hosts = {"cp1": {"ansible_host": "10.0.0.1"}, "w1": {"ansible_host": "10.0.0.2"}}
    doc = {
        "all": {
            "hosts": hosts,
            "vars": all_vars,
            "children": {
                "kube_control_plane": {"hosts": {"cp1": None}},
                "kube_node": {"hosts": {"w1": None}},
            },
        }
    }
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_inventory_workers_section_and_kubespray_variables(tmp_path: Path) -> None:
    native = tmp_path / "inv.yaml"
    base = (Path(__file__).parents[1] / "data" / "inventories" / "native.yaml").read_text()
    native.write_text(
        base + "workers: {selector: 'zone in (a,b)', group_by: zone, order_by: rack,"
        " max_unavailable_per_group: 2}\n"
    )
    w = load_inventory(native, ssh_config_path=tmp_path / "none").worker_choice
    assert (w.selector, w.group_by, w.order_by, w.max_unavailable_per_group) == (
        "zone in (a,b)",
        "zone",
        "rack",
        2,
    )
    ks = _kubespray(
        tmp_path,
        {
            "upgrader_workers_selector": "!spot",
            "upgrader_workers_group_by": "zone",
            "upgrader_workers_max_unavailable_per_group": "3",
        },
    )
    w = load_inventory(ks, ssh_config_path=tmp_path / "none").worker_choice
    assert (w.selector, w.group_by, w.max_unavailable_per_group) == ("!spot", "zone", 3)


def test_a_bad_inventory_selector_is_one_line_naming_the_field(tmp_path: Path) -> None:
    ks = _kubespray(tmp_path, {"upgrader_workers_selector": "zone in ()"})
    with pytest.raises(ConfigError) as info:
        load_inventory(ks, ssh_config_path=tmp_path / "none")
    message = str(info.value)
    assert (
        "upgrader_workers_selector" in message and "empty set of values after 'zone in'" in message
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    "bad",
    [[], {"groups": {"a": "w-1"}}, {"max_unavailable_per_group": 0}, {"selected": "2"}],
)
def test_a_malformed_stored_selection_is_one_line(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^p: workers"):
        WorkerSelection.from_dict(bad, "p: workers")
