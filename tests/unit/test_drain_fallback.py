"""--drain-fallback and --pod-selector: the label selector parser, the fallback's pure
decisions, the per-node settings (inventory, flag, inventory-wide), the plan's drain step,
the drainability findings, the state record and the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from refusal import refusal
from run_kit import one_hop_run

from upgrader import state as st
from upgrader.core.checks.drainability import DrainFlags, check_drainability
from upgrader.core.drain import (
    effective,
    fallback_text,
    fallback_wait_seconds,
    overridden_budgets,
)
from upgrader.core.model import Facts
from upgrader.core.podselector import SelectorError, canonical, parse_selector
from upgrader.core.render import describe_step
from upgrader.core.render_brief import render_brief
from upgrader.errors import ConfigError
from upgrader.inventory import load_inventory
from upgrader.planning import PlanRequest, drain_settings, make_plan
from upgrader.summary import build_summary

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"


# --------------------------------------------------------------------------- selector


@pytest.mark.parametrize(
    ("text", "labels", "match"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("!app", {"tier": "x"}, True),
        ("tier in (a, b)", {"tier": "b"}, True),
        ("tier in (a,b)", {}, False),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("app=web,tier in (front)", {"app": "web", "tier": "front"}, True),
        ("app=web, tier in (front)", {"app": "web", "tier": "back"}, False),
        ("gen>3", {"gen": "4"}, True),
        ("gen<3", {"gen": "4"}, False),
        ("gen>3", {"gen": "x"}, False),
        ("example.com/role=db", {"example.com/role": "db"}, True),
    ],
)
def test_selector_matches_like_kubernetes(text: str, labels: dict[str, str], match: bool) -> None:
    assert parse_selector(text).matches(labels) is match


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("app=web,,tier=x", "expected a label key, found ','"),
        ("app=", None),  # an empty value is valid
        ("a b", "unknown operator 'b'"),
        ("tier in (a", "expected ',' or ')'"),
        ("tier in ()", "empty set of values"),
        ("-app=x", "invalid label key '-app'"),
        ("Bad_Prefix.COM/app=x", "prefix"),
        ("app=web!", "expected ',' between requirements"),
        ("gen>x", "integer"),
        ("app=" + "v" * 64, "label value"),
        ("app=x\n", "control characters"),
    ],
)
def test_bad_selectors_are_one_line_errors(text: str, why: str | None) -> None:
    if why is None:
        assert parse_selector(text).matches({"app": ""})
        return
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_canonical_text() -> None:
    assert canonical(" app == web ,tier in (b, a), !old ") == "app=web,tier in (b,a),!old"
    assert canonical("") == ""


# --------------------------------------------------------------------------- fallback


def _pod(name: str, labels: dict[str, str], grace: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": "w-1"}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    owner = [{"kind": "ReplicaSet", "name": name, "controller": True}]
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "labels": labels,
            "ownerReferences": owner,
        },
        "spec": spec,
        "status": {"phase": "Running"},
    }


def _pdb(name: str, match: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": match}, **spec},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1},
    }


def test_fallback_decisions() -> None:
    pods = [_pod("db-1", {"app": "db"}, grace=5), _pod("web-1", {"app": "web"})]
    pdbs = [_pdb("db", {"app": "db"}, minAvailable=1), _pdb("other", {"app": "x"})]
    assert overridden_budgets(pods, pdbs) == ["default/db"]
    assert fallback_wait_seconds([pods[0]]) == 35.0  # its own grace period + 30s
    assert fallback_wait_seconds(pods) == 60.0  # the API's default grace period is 30s
    assert fallback_text(["default/db-1"], ["default/db"]) == (
        "drain fallback: deleted pod(s) default/db-1 (overriding PodDisruptionBudget default/db)"
    )
    # the node's own value, else the flag, else the inventory-wide one, else the default
    assert effective("none", "delete", "delete", "none") == "none"
    assert effective(None, "delete", "none", "none") == "delete"
    assert effective(None, None, "delete", "none") == "delete"
    assert effective(None, None, None, "none") == "none"


def test_drainability_knows_the_fallback_and_the_selector() -> None:
    pods = [_pod("db-1", {"app": "db"}), _pod("web-1", {"app": "web"})]
    pdbs = [_pdb("db", {"app": "db"}, minAvailable=1)]
    plain = check_drainability(pods, pdbs, ["w-1"])
    assert [(f.code, f.severity.value) for f in plain] == [("DRAIN_PDB_BLOCKS", "blocker")]
    passed = check_drainability(pods, pdbs, ["w-1"], DrainFlags(fallback_delete=frozenset({"w-1"})))
    assert [(f.code, f.severity.value) for f in passed] == [("DRAIN_PDB_BLOCKS", "warning")]
    assert "(passed by --drain-fallback delete)" in passed[0].message
    # the budget's pod stays on the node: nothing to say about it
    left = check_drainability(pods, pdbs, ["w-1"], DrainFlags(pod_selectors={"w-1": "app=web"}))
    assert left == []


# --------------------------------------------------------------------------- settings


def _inventory(tmp_path: Path, wide: str = "", w1: str = "", w2: str = "") -> Any:
    text = f"""cluster: {{name: demo}}
{wide}
nodes:
  - {{name: cp-1, address: 10.0.0.1, role: control-plane}}
  - {{name: w-1, address: 10.0.0.2, role: worker{w1}}}
  - {{name: w-2, address: 10.0.0.3, role: worker{w2}}}
"""
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return load_inventory(path, ssh_config_path=tmp_path / "no-ssh-config")


def _facts() -> Facts:
    doc = json.loads((DATA / "one-cp-two-workers.json").read_text())
    return Facts.from_dict(doc, source="one-cp-two-workers.json")


def _plan(inv: Any, **kw: Any) -> Any:
    from datetime import date

    from upgrader.core.versions import KubeVersion

    req = PlanRequest(
        target=KubeVersion.parse("v1.28.4"),
        release_data=DATA / "releases.json",
        today=date(2024, 6, 1),
        **kw,
    )
    return make_plan(_facts(), req, inv)


def _drain(plan: Any, node: str) -> Any:
    return next(s for s in plan.steps if s.kind == "drain" and s.node == node)


def test_per_node_settings_flag_and_inventory_wide(tmp_path: Path) -> None:
    inv = _inventory(
        tmp_path,
        wide="drain: {fallback: delete, pod_selector: 'tier=back'}",
        w1=", drain: {fallback: none, pod_selector: 'app in (x, y)'}",
    )
    p = _plan(inv)
    assert dict(_drain(p, "w-1").params).get("fallback") is None  # its own "none"
    assert _drain(p, "w-1").params["pod_selector"] == "app in (x,y)"
    assert _drain(p, "w-2").params["fallback"] == "delete"  # the inventory-wide one
    assert _drain(p, "w-2").params["pod_selector"] == "tier=back"
    # a flag overrides the inventory-wide value, not the node's own
    p = _plan(inv, drain_fallback="none", pod_selector="app=z")
    assert "fallback" not in _drain(p, "w-2").params
    assert _drain(p, "w-2").params["pod_selector"] == "app=z"
    assert _drain(p, "w-1").params["pod_selector"] == "app in (x,y)"
    assert drain_settings(PlanRequest(target=p.target), inv, p)["w-2"] == ("delete", "tier=back")


def test_the_plan_shows_the_settings(tmp_path: Path) -> None:
    p = _plan(_inventory(tmp_path), drain_fallback="delete", pod_selector="app=x")
    d = _drain(p, "w-1")
    text = describe_step(d)
    assert "then the pods they still hold are deleted" in text
    assert "only pods matching app=x" in text
    assert "then the pods they still hold are deleted" in " ".join(render_brief(p).split())
    assert d.to_dict()["params"]["fallback"] == "delete"
    # unset: the step reads as before (no new params)
    plain = _drain(_plan(_inventory(tmp_path)), "w-1")
    assert "fallback" not in plain.params and "pod_selector" not in plain.params
    assert "deleted" not in describe_step(plain)


@pytest.mark.parametrize(
    ("node", "field"),
    [
        (", drain: {fallback: force}", "nodes[1].drain.fallback"),
        (", drain: {pod_selector: 'a b'}", "nodes[1].drain.pod_selector"),
        (", drain: {fallback: true}", "nodes[1].drain.fallback"),
        (", drain: {selector: app=x}", "nodes[1].drain.selector"),
    ],
)
def test_bad_inventory_drain_settings(tmp_path: Path, node: str, field: str) -> None:
    assert field in refusal(_inventory, tmp_path, w1=node)


def test_kubespray_variables(tmp_path: Path) -> None:
    doc = {
        "all": {
            "vars": {"upgrader_drain_fallback": "delete"},
            "hosts": {
                "cp-1": {"ansible_host": "10.0.0.1"},
                "w-1": {"ansible_host": "10.0.0.2", "upgrader_drain_pod_selector": "app=x"},
                "w-2": {"ansible_host": "10.0.0.3", "upgrader_drain_fallback": "none"},
            },
            "children": {
                "kube_control_plane": {"hosts": {"cp-1": None}},
                "kube_node": {"hosts": {"w-1": None, "w-2": None}},
            },
        }
    }
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps(doc))
    inv = load_inventory(path, ssh_config_path=tmp_path / "no-ssh-config")
    assert inv.drain_settings("w-1") == ((None, "app=x"), ("delete", None))
    assert inv.drain_settings("w-2") == (("none", None), ("delete", None))
    doc["all"]["hosts"]["w-1"]["upgrader_drain_fallback"] = "sometimes"  # type: ignore[index]
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_inventory(path, ssh_config_path=tmp_path / "no-ssh-config")
    assert "upgrader_drain_fallback" in str(info.value)


def test_unset_drain_settings_keep_the_fingerprint(tmp_path: Path) -> None:
    a = _inventory(tmp_path)
    assert "drain" not in a.to_dict() and all("drain" not in n for n in a.to_dict()["nodes"])
    b = _inventory(tmp_path, w1=", drain: {fallback: delete}")
    assert a.fingerprint() != b.fingerprint()


# --------------------------------------------------------------------------- state, summary


def test_state_record_and_summary(tmp_path: Path) -> None:
    p = _plan(_inventory(tmp_path), drain_fallback="delete")
    s = one_hop_run(
        p.steps,
        run_id="r1",
        now="2026-01-01T10:00:00.000+00:00",
    )
    sid = _drain(p, "w-1").id
    s = st.record_drain_fallback(s, sid, "w-1", ["default/db-1"], ["default/db"])
    s = st.record_drain_fallback(s, sid, "w-1", ["default/db-2"], ["default/db"])
    again = st.RunState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.drain_fallbacks[sid]["pods"] == ["default/db-1", "default/db-2"]
    assert again.drain_fallbacks[sid]["budgets"] == ["default/db"]
    bad = s.to_dict()
    bad["drain_fallbacks"][sid]["pods"] = "default/db-1"
    with pytest.raises(ConfigError) as info:
        st.RunState.from_dict(bad)
    assert f"drain_fallbacks.{sid}" in str(info.value)

    summary = build_summary(again, p.entries, _facts(), None, {}, [], [])
    by = {n.node: n for n in summary.nodes}
    assert by["w-1"].fallback_deleted == ["default/db-1", "default/db-2"]
    assert by["w-2"].fallback_deleted == []
    assert "drain fallback: deleted pod(s) default/db-1, default/db-2 (overriding " in (
        summary.text()
    )
    assert summary.to_dict()["nodes"][1]["overridden_budgets"] == ["default/db"]


def test_a_resume_given_drain_flags_runs_the_stored_drains_with_them(tmp_path: Path) -> None:
    from upgrader.apply import _resume_drain_overrides

    inv = _inventory(tmp_path)
    recorded = tuple(_plan(inv).steps)  # the run started without a fallback
    base = PlanRequest(target=_plan(inv).target)
    said: list[str] = []
    assert _resume_drain_overrides(base, inv, recorded, "r1", said.append) == {}
    same = PlanRequest(target=base.target, drain_fallback="none")
    assert _resume_drain_overrides(same, inv, recorded, "r1", said.append) == {}
    assert said == []
    after_timeout = PlanRequest(target=base.target, drain_fallback="delete")
    got = _resume_drain_overrides(after_timeout, inv, recorded, "r1", said.append)
    drained = sorted({s.node for s in recorded if s.kind == "drain"})
    assert sorted(got) == drained
    assert set(got.values()) == {("delete", None)}
    assert said[0] == (
        f"resume of run r1: the drain of {drained[0]} runs with fallback delete, "
        "pod selector none (recorded: none, none)"
    )
    selected = _resume_drain_overrides(
        PlanRequest(target=base.target, pod_selector="app=x"), inv, recorded, "r1", said.append
    )
    assert set(selected.values()) == {("none", "app=x")}


def test_the_fallback_event_is_a_progress_line() -> None:
    from upgrader.execute import events as ev
    from upgrader.execute.progress import describe

    text = fallback_text(["default/db-1"], ["default/db"])
    line = describe(
        ev.Event(
            ev.DRAIN_FALLBACK,
            {"node": "w-1", "name": "drain", "pods": ["default/db-1"], "message": text},
        )
    )
    assert line is not None and line.endswith(f"w-1 drain: {text}")
    assert ev.DRAIN_FALLBACK in ev.EVENT_KINDS
