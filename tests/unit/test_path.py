"""Upgrade path: hops, catch-up, strategies, and properties over generated clusters."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader.core import path as PATH
from upgrader.core import policy as P
from upgrader.core.model import ClusterFacts, ControlPlaneVersions, Facts, NodeFacts, Severity
from upgrader.core.path import (
    UpgradePath,
    control_plane_needs_upgrade,
    kubelet_needs_upgrade,
    node_needs_upgrade,
    plan_path,
    simulate,
)
from upgrader.core.policy import PolicyOptions, kubeadm_apply_findings, skew_findings
from upgrader.core.releases import ReleaseData, load_release_data, release_data_from
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

V = KubeVersion.parse
R = load_release_data()
TODAY = date(2026, 11, 28)
OPTS = PolicyOptions(today=TODAY)


def cp(
    name: str,
    version: str,
    kubelet: str | None = None,
    *,
    cm: str | None = None,
    kubeadm: str | None = None,
) -> NodeFacts:
    v = V(version)
    return NodeFacts(
        name,
        "control-plane",
        kubelet=V(kubelet) if kubelet else v,
        kubeadm=V(kubeadm) if kubeadm else v,
        control_plane=ControlPlaneVersions(v, V(cm) if cm else v, V(cm) if cm else v),
    )


def worker(name: str, kubelet: str | None, kubeadm: str | None = None) -> NodeFacts:
    k = V(kubelet) if kubelet else None
    return NodeFacts(name, "worker", kubelet=k, kubeadm=V(kubeadm) if kubeadm else k)


def facts(cluster: str, *nodes: NodeFacts) -> Facts:
    return Facts(ClusterFacts("demo", V(cluster)), nodes)


def plan(f: Facts, target: str, strategy: str = "auto", **flags: bool) -> UpgradePath:
    return plan_path(f, V(target), R, PolicyOptions(today=TODAY, **flags), strategy)


def hops(p: UpgradePath) -> list[str]:
    return [str(h) for h in p.hops]


def codes(p: UpgradePath, severity: Severity | None = None) -> list[str]:
    return [f.code for f in p.findings if severity is None or f.severity == severity]


SMALL = facts("v1.33.2", cp("cp-1", "v1.33.2"), cp("cp-2", "v1.33.2"), worker("w-1", "v1.33.2"))


# --------------------------------------------------------------------------- hops


def test_multi_hop_goes_through_the_newest_patch_of_each_minor() -> None:
    p = plan(SMALL, "v1.36.1")
    assert hops(p) == ["v1.34.9", "v1.35.9", "v1.36.1"]
    assert p.blockers == ()
    assert (p.current, p.target, p.catch_up) == (V("v1.33.2"), V("v1.36.1"), False)


@pytest.mark.parametrize(
    ("cluster", "target", "expected"),
    [
        ("v1.35.2", "v1.36.4", ["v1.36.4"]),  # one minor
        ("v1.36.1", "v1.36.4", ["v1.36.4"]),  # patch upgrade
        ("v1.35.2", "v1.37.0", ["v1.36.4", "v1.37.0"]),  # last hop is the exact target
        ("v1.36.4", "v1.36.4", []),  # nothing to do
    ],
)
def test_hops(cluster: str, target: str, expected: list[str]) -> None:
    p = plan(facts(cluster, cp("cp-1", cluster), worker("w-1", cluster)), target)
    assert hops(p) == expected
    assert p.blockers == ()
    assert p.nothing_to_do is (expected == [])
    if not expected:
        assert P.SKEW_KUBELET_TOO_OLD not in codes(p)
        assert PATH.NOTHING_TO_DO in codes(p, Severity.INFO)
        assert p.drain_once_reason == "nothing to do"


@pytest.mark.parametrize(
    "lagging",
    [
        worker("w-1", "v1.36.1"),  # kubelet at an older patch
        worker("w-1", "v1.35.9"),  # kubelet a minor behind
        worker("w-1", "v1.36.4", kubeadm="v1.36.1"),  # only the kubeadm package
        worker("w-1", None),  # unknown kubelet
    ],
)
def test_same_version_with_lagging_nodes_still_has_work(lagging: NodeFacts) -> None:
    p = plan(facts("v1.36.4", cp("cp-1", "v1.36.4"), lagging), "v1.36.4")
    assert hops(p) == ["v1.36.4"]
    assert not p.nothing_to_do


def test_same_version_with_a_lagging_control_plane_component() -> None:
    f = facts("v1.36.4", cp("cp-1", "v1.36.4"), cp("cp-2", "v1.36.1", "v1.36.4"))
    p = plan(f, "v1.36.4")
    assert hops(p) == ["v1.36.4"]
    kinds = [(e.kind, e.node) for e in simulate(f, p.hops, p.strategy)]
    assert ("apply", "cp-1") not in kinds  # the cluster version does not move: no apply
    assert kinds[:2] == [("node", "cp-2"), ("control-plane", "cp-2")]


def test_downgrade_is_refused() -> None:
    p = plan(SMALL, "v1.32.5")
    assert p.hops == () and P.DOWNGRADE in codes(p, Severity.BLOCKER)
    assert not p.nothing_to_do


def test_no_control_plane_node() -> None:
    p = plan(facts("v1.36.1", worker("w-1", "v1.36.1")), "v1.36.4")
    assert p.hops == () and codes(p, Severity.BLOCKER) == [PATH.NO_CONTROL_PLANE]


def test_another_major_version() -> None:
    p = plan(SMALL, "v2.0.0")
    assert p.hops == () and PATH.MAJOR_VERSION_CHANGE in codes(p, Severity.BLOCKER)


def test_missing_release_data_for_an_intermediate_minor() -> None:
    gap: ReleaseData = release_data_from(
        [m for k, m in R.minors.items() if k != (1, 35)], generated=R.generated
    )
    p = plan_path(SMALL, V("v1.36.1"), gap, OPTS)
    assert p.hops == ()
    f = next(f for f in p.findings if f.code == PATH.NO_RELEASE_DATA)
    assert f.severity == Severity.BLOCKER and "1.35" in f.message
    newest = gap.newest_minor
    assert f"the newest minor it knows is v{newest[0]}.{newest[1]}, =" in f.message


def test_prerelease_target() -> None:
    f = facts("v1.37.1", cp("cp-1", "v1.37.1"), worker("w-1", "v1.37.1"))
    p = plan(f, "v1.38.0-rc.1")
    assert hops(p) == ["v1.38.0-rc.1"]
    assert P.PRERELEASE_TARGET in codes(p, Severity.BLOCKER)
    p = plan(f, "v1.38.0-rc.1", allow_release_candidate=True)
    assert p.blockers == ()
    assert P.UNKNOWN_RELEASE in codes(p, Severity.WARNING)


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        plan(SMALL, "v1.34.9", strategy="yolo")


# --------------------------------------------------------------------------- catch-up


@pytest.mark.parametrize(
    ("f", "target", "expected", "who"),
    [
        # a worker kubelet 3 minors behind: would be 4 behind at the first hop
        (
            facts("v1.33.2", cp("cp-1", "v1.33.2"), worker("w-1", "v1.30.14")),
            "v1.35.1",
            ["v1.33.2", "v1.34.9", "v1.35.1"],
            "w-1 (kubelet v1.30.14)",
        ),
        # an interrupted HA upgrade: cp-2 still a minor behind the cluster version
        (
            facts(
                "v1.34.9",
                cp("cp-1", "v1.34.9", "v1.33.10"),  # kubelets move after every control plane
                cp("cp-2", "v1.33.10"),
                worker("w-1", "v1.33.10"),
            ),
            "v1.35.9",
            ["v1.34.9", "v1.35.9"],
            "cp-2 (kube-apiserver v1.33.10",
        ),
        # kubeadm 1.28 lets kubelets be only one minor below the target
        (
            facts("v1.27.3", cp("cp-1", "v1.27.3"), worker("w-1", "v1.26.9")),
            "v1.28.15",
            ["v1.27.3", "v1.28.15"],
            "w-1 (kubelet v1.26.9)",
        ),
    ],
)
def test_catch_up_hop_brings_lagging_nodes_to_the_cluster_version_first(
    f: Facts, target: str, expected: list[str], who: str
) -> None:
    p = plan(f, target)
    assert hops(p) == expected
    assert p.catch_up
    note = next(x for x in p.findings if x.code == PATH.CATCH_UP_HOP)
    assert note.severity == Severity.INFO and who in note.message
    assert p.blockers == ()


def test_no_catch_up_when_the_lag_is_allowed() -> None:
    # kubelet 2 behind, first hop 1.34 with kubeadm 1.34: 3 behind is allowed
    p = plan(facts("v1.33.2", cp("cp-1", "v1.33.2"), worker("w-1", "v1.31.14")), "v1.34.9")
    assert hops(p) == ["v1.34.9"] and not p.catch_up and p.blockers == ()


def test_current_skew_violation_is_reported_once_as_now() -> None:
    f = facts("v1.35.9", cp("cp-1", "v1.35.9"), worker("w-1", "v1.36.1"))  # kubelet too new
    p = plan(f, "v1.36.4")
    found = [x for x in p.findings if x.code == P.SKEW_KUBELET_TOO_NEW]
    assert len(found) == 1 and found[0].message.startswith("now: ")
    # the plan's control-plane steps bring every kube-apiserver to 1.36 first: a warning
    assert found[0].node == "w-1" and found[0].severity == Severity.WARNING
    assert "control-plane" in found[0].message or "control plane" in found[0].message


# --------------------------------------------------------------------------- strategies


def test_auto_picks_drain_once_for_several_hops_when_allowed() -> None:
    p = plan(SMALL, "v1.36.1")
    assert (p.strategy, p.drain_once_allowed) == ("drain-once", True)
    assert "3 hops" in p.drain_once_reason


def test_explicit_per_hop_is_honoured() -> None:
    p = plan(SMALL, "v1.36.1", strategy="per-hop")
    assert (p.strategy, p.drain_once_allowed) == ("per-hop", True)


def test_single_hop_is_per_hop_under_auto() -> None:
    p = plan(SMALL, "v1.34.9")
    assert (p.strategy, p.drain_once_allowed) == ("per-hop", True)
    assert plan(SMALL, "v1.34.9", strategy="drain-once").strategy == "drain-once"


@pytest.mark.parametrize(
    ("f", "target", "why"),
    [
        # kubeadm 1.28 allows kubelets one minor below: workers at 1.26 block hop 1.28
        (
            facts("v1.26.2", cp("cp-1", "v1.26.2"), worker("w-1", "v1.26.2")),
            "v1.29.1",
            "kubeadm v1.28.15 allows at most 1",
        ),
        # four hops: workers left at 1.30 would be 4 minors behind
        (
            facts("v1.30.2", cp("cp-1", "v1.30.2"), worker("w-1", "v1.30.2")),
            "v1.34.9",
            "w-1",
        ),
    ],
)
def test_drain_once_not_allowed(f: Facts, target: str, why: str) -> None:
    p = plan(f, target)
    assert (p.strategy, p.drain_once_allowed) == ("per-hop", False)
    assert why in p.drain_once_reason
    assert p.blockers == ()  # per-hop itself is fine
    asked = plan(f, target, strategy="drain-once")
    assert asked.strategy == "drain-once"
    b = [x for x in asked.findings if x.code == PATH.DRAIN_ONCE_NOT_ALLOWED]
    assert len(b) == 1 and b[0].severity == Severity.BLOCKER and b[0].override is None
    assert why in b[0].message


def test_drain_once_is_judged_without_force() -> None:
    f = facts("v1.26.2", cp("cp-1", "v1.26.2"), worker("w-1", "v1.26.2"))
    assert not plan(f, "v1.29.1", force=True).drain_once_allowed


def test_drain_once_allowed_at_the_kubelet_lag_limit() -> None:
    # three hops from 1.33: workers at 1.33 end 3 minors behind 1.36 at most
    p = plan(facts("v1.33.2", cp("cp-1", "v1.33.2"), worker("w-1", "v1.33.2")), "v1.36.1")
    assert p.drain_once_allowed


# --------------------------------------------------------------------------- simulation


def test_per_hop_event_order() -> None:
    f = facts("v1.34.9", cp("cp-1", "v1.34.9"), cp("cp-2", "v1.34.9"), worker("w-1", "v1.34.9"))
    got = [
        (e.kind, e.node, str(e.hop)) for e in simulate(f, (V("v1.35.9"), V("v1.36.4")), "per-hop")
    ]
    per = [
        ("apply", "cp-1"),
        ("control-plane", "cp-1"),
        ("node", "cp-2"),
        ("control-plane", "cp-2"),
        ("kubelet", "cp-1"),
        ("kubelet", "cp-2"),
        ("node", "w-1"),
        ("kubelet", "w-1"),
    ]
    assert got == [(k, n, "v1.35.9") for k, n in per] + [(k, n, "v1.36.4") for k, n in per]


def test_drain_once_moves_workers_once_at_the_end() -> None:
    f = facts("v1.34.9", cp("cp-1", "v1.34.9"), worker("w-1", "v1.34.9"), worker("w-2", "v1.34.9"))
    events = list(simulate(f, (V("v1.35.9"), V("v1.36.4")), "drain-once"))
    worker_events = [(e.kind, e.node, str(e.hop)) for e in events if e.node in ("w-1", "w-2")]
    assert worker_events == [
        ("node", "w-1", "v1.36.4"),
        ("kubelet", "w-1", "v1.36.4"),
        ("node", "w-2", "v1.36.4"),
        ("kubelet", "w-2", "v1.36.4"),
    ]
    assert events[-1].state.kubelets == {
        "cp-1": V("v1.36.4"),
        "w-1": V("v1.36.4"),
        "w-2": V("v1.36.4"),
    }


def test_apply_sees_the_kubelets_of_its_time() -> None:
    f = facts("v1.34.9", cp("cp-1", "v1.34.9"), worker("w-1", "v1.33.1"))
    applies = [
        e for e in simulate(f, (V("v1.35.9"), V("v1.36.4")), "drain-once") if e.kind == "apply"
    ]
    assert [dict(e.kubelets)["w-1"] for e in applies] == [V("v1.33.1"), V("v1.33.1")]
    assert [e.cluster for e in applies] == [V("v1.34.9"), V("v1.35.9")]


# --------------------------------------------------------------------------- predicates


@pytest.mark.parametrize(
    ("node", "hop", "cp_needs", "kubelet_needs", "needs"),
    [
        (cp("cp-1", "v1.30.2"), "v1.30.2", False, False, False),
        (cp("cp-1", "v1.30.2"), "v1.30.3", True, True, True),
        (cp("cp-1", "v1.30.3", "v1.30.2"), "v1.30.3", False, True, True),
        (cp("cp-1", "v1.30.3", cm="v1.30.2"), "v1.30.3", True, False, True),
        (cp("cp-1", "v1.30.3", kubeadm="v1.30.2"), "v1.30.3", False, False, True),
        (cp("cp-1", "v1.30.4"), "v1.30.3", False, False, False),  # already past the hop
        (
            NodeFacts("cp-9", "control-plane", kubelet=V("v1.30.3"), kubeadm=V("v1.30.3")),
            "v1.30.3",
            True,
            False,
            True,
        ),  # control-plane versions unknown
        (worker("w-1", "v1.30.3"), "v1.30.3", False, False, False),
        (worker("w-1", "v1.30.2"), "v1.30.3", False, True, True),
        (worker("w-1", None, kubeadm="v1.30.3"), "v1.30.3", False, True, True),
        (worker("w-1", "v1.30.3", kubeadm="v1.29.9"), "v1.30.3", False, False, True),
        (
            NodeFacts(
                "w-2", "worker", kubelet=V("v1.30.3"), kubeadm=V("v1.30.3"), kubectl=V("v1.28.0")
            ),
            "v1.30.3",
            False,
            False,
            False,
        ),  # kubectl alone
    ],
)
def test_needs_upgrade(
    node: NodeFacts, hop: str, cp_needs: bool, kubelet_needs: bool, needs: bool
) -> None:
    assert control_plane_needs_upgrade(node, V(hop)) is cp_needs
    assert kubelet_needs_upgrade(node, V(hop)) is kubelet_needs
    assert node_needs_upgrade(node, V(hop)) is needs


def test_every_code_is_documented() -> None:
    emitted = {
        v
        for k, v in vars(PATH).items()
        if k.isupper() and isinstance(v, str) and v.isupper() and "_" in v
    }
    assert emitted <= set(PATH.CODES)


# --------------------------------------------------------------------------- properties


def _at(minor: int, draw: st.DrawFn) -> KubeVersion:
    rel = R.get((1, minor))
    assert rel is not None
    return draw(st.sampled_from(rel.patches))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Facts, KubeVersion, str, PolicyOptions]:
    cmin = draw(st.integers(min_value=20, max_value=36))
    cluster = _at(cmin, draw)
    nodes: list[NodeFacts] = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        api = cluster if i == 0 else _at(cmin - draw(st.integers(0, 1)), draw)
        ctrl = api if draw(st.booleans()) else _at(max(api.minor - 1, 19), draw)
        kubelet = _at(max(cmin - draw(st.integers(0, 4)), 19), draw)
        nodes.append(
            NodeFacts(
                f"cp-{i + 1}",
                "control-plane",
                kubelet=min(kubelet, api),
                kubeadm=api,
                control_plane=ControlPlaneVersions(api, ctrl, ctrl),
            )
        )
    for i in range(draw(st.integers(min_value=0, max_value=3))):
        kubelet = _at(max(cmin - draw(st.integers(0, 4)), 19), draw)
        known = draw(st.integers(0, 9)) > 0
        nodes.append(
            NodeFacts(
                f"w-{i + 1}",
                "worker",
                kubelet=kubelet if known else None,
                kubeadm=kubelet,
            )
        )
    tmin = draw(st.integers(min_value=cmin, max_value=min(cmin + 5, 37)))
    if tmin > cmin and draw(st.integers(0, 5)) == 0:
        target = KubeVersion(1, tmin, 0, "rc", draw(st.integers(0, 3)))
    else:
        target = draw(st.sampled_from([p for p in R.minors[(1, tmin)].patches if p >= cluster]))
    strategy = draw(st.sampled_from(["auto", "per-hop", "drain-once"]))
    opts = PolicyOptions(today=TODAY, force=draw(st.booleans()), allow_release_candidate=True)
    return Facts(ClusterFacts("gen", cluster), tuple(nodes)), target, strategy, opts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_path_properties(item: tuple[Facts, KubeVersion, str, PolicyOptions]) -> None:
    f, target, strategy, opts = item
    cluster = f.cluster.version
    p = plan_path(f, target, R, opts, strategy)

    # structure of the hops
    hs = p.hops
    assert all(a < b for a, b in itertools.pairwise(hs)), "hops strictly increase"
    if hs and hs[0].minor_key != hs[-1].minor_key:
        assert all(b.minor_diff(a) == 1 for a, b in itertools.pairwise(hs))
    if hs:
        assert hs[-1] == target
        assert hs[0] >= cluster
        for h in hs[1:-1]:
            assert h == R.newest_patch(h), "intermediate hops are the newest known patch"
    if len(hs) == 1 or not hs:
        assert not p.catch_up
    if p.catch_up:
        assert hs[0] == cluster
    elif hs and target.minor_key != cluster.minor_key:
        assert hs[0].minor_diff(cluster) == 1
    if not hs:
        assert target == cluster or p.blockers

    # strategy bookkeeping
    if p.strategy == "drain-once" and strategy != "drain-once":
        assert p.drain_once_allowed
    if strategy == "drain-once" and hs and not p.drain_once_allowed:
        assert PATH.DRAIN_ONCE_NOT_ALLOWED in [x.code for x in p.blockers]

    if not hs:
        return
    walked = p.strategy if p.drain_once_allowed else "per-hop"
    events = list(simulate(f, hs, walked))
    prev_apis = None
    # a kubelet newer than a lagging kube-apiserver (the kubeadm page's per-node order) is a
    # warning when the first hop's control-plane steps resolve it: it may stand until then
    tolerated = {
        (x.code, x.node)
        for x in p.findings
        if x.code == P.SKEW_KUBELET_TOO_NEW and x.severity == Severity.WARNING
    }
    for ev in events:
        if ev.kind == "apply":
            found = kubeadm_apply_findings(ev.cluster, ev.hop, ev.hop, ev.kubelets, opts)
            # never a hop kubeadm refuses outright, whatever else is wrong
            assert not [x for x in found if x.override is None], found
            if not p.blockers:
                assert not [x for x in found if x.severity == Severity.BLOCKER], found
        elif not p.blockers:
            bad = [
                x
                for x in skew_findings(ev.state)
                if x.severity == Severity.BLOCKER
                and not (ev.hop == hs[0] and (x.code, x.node) in tolerated)
            ]
            assert not bad, (ev.kind, ev.node, str(ev.hop), bad)
        if prev_apis is not None:
            for node, v in ev.state.apiservers.items():
                assert v.minor_diff(prev_apis[node]) in (0, 1)
        prev_apis = ev.state.apiservers
    # the walk ends with every component at the target or beyond
    end = events[-1].state if events else None
    if end is not None:
        for comp in (end.apiservers, end.controller_managers, end.schedulers, end.kubelets):
            assert all(v >= target for v in comp.values())
        assert len(end.kubelets) == len(f.nodes)
