"""Policy: both sides of every boundary of the target checks, kubeadm's refusals and the
version skew policy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import pytest

from upgrader.core import policy as P
from upgrader.core.model import (
    ClusterFacts,
    ControlPlaneVersions,
    Facts,
    Finding,
    NodeFacts,
    Severity,
)
from upgrader.core.policy import (
    ClusterState,
    PolicyOptions,
    check_target,
    kubeadm_apply_findings,
    kubeadm_node_findings,
    skew_findings,
    state_from_facts,
)
from upgrader.core.releases import MinorRelease, ReleaseData, release_data_from
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import Override

V = KubeVersion.parse
TODAY = date(2030, 6, 1)
OPTS = PolicyOptions(today=TODAY)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def only(findings: list[Finding], code: str) -> Finding:
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, findings
    return found[0]


def _rel(minor: int, released: date, eol: date, latest: int = 5) -> MinorRelease:
    return MinorRelease(
        (1, minor),
        released,
        eol,
        KubeVersion(1, minor, latest),
        tuple(KubeVersion(1, minor, p) for p in range(latest + 1)),
    )


# 1.50 ended, 1.51 ends today, 1.52-1.54 live: window on TODAY = 1.52, 1.53, 1.54
RELEASES = release_data_from(
    [
        _rel(50, TODAY - timedelta(days=500), TODAY - timedelta(days=1)),
        _rel(51, TODAY - timedelta(days=400), TODAY),
        _rel(52, TODAY - timedelta(days=300), TODAY + timedelta(days=100)),
        _rel(53, TODAY - timedelta(days=200), TODAY + timedelta(days=200)),
        _rel(54, TODAY - timedelta(days=10), TODAY + timedelta(days=400)),
        _rel(55, TODAY + timedelta(days=10), TODAY + timedelta(days=500)),  # not released yet
    ],
    generated=TODAY,
)


# --------------------------------------------------------------------------- check_target


@pytest.mark.parametrize(
    ("cluster", "target", "downgrade"),
    [
        ("v1.53.2", "v1.53.2", False),
        ("v1.53.2", "v1.53.3", False),
        ("v1.53.2", "v1.53.1", True),  # patch downgrade too
        ("v1.53.2", "v1.52.5", True),
        ("v1.53.2+a", "v1.53.2+b", False),
        ("v1.53.0", "v1.53.0-rc.1", True),
    ],
)
def test_downgrade(cluster: str, target: str, downgrade: bool) -> None:
    found = check_target(
        V(target), V(cluster), RELEASES, PolicyOptions(today=TODAY, allow_experimental=True)
    )
    if downgrade:
        f = only(found, P.DOWNGRADE)
        assert f.severity == Severity.BLOCKER and f.override is None
        assert target.split("+")[0] in f.message and cluster.split("+")[0] in f.message
    else:
        assert P.DOWNGRADE not in codes(found)


@pytest.mark.parametrize(
    ("target", "flags", "severity", "override"),
    [
        ("v1.54.0-rc.1", {}, Severity.BLOCKER, Override.ALLOW_RC),
        ("v1.54.0-rc.1", {"allow_release_candidate": True}, Severity.WARNING, Override.ALLOW_RC),
        ("v1.54.0-rc.1", {"allow_experimental": True}, Severity.WARNING, Override.ALLOW_RC),
        ("v1.54.0-beta.1", {}, Severity.BLOCKER, Override.ALLOW_EXPERIMENTAL),
        (
            "v1.54.0-beta.1",
            {"allow_release_candidate": True},
            Severity.BLOCKER,
            Override.ALLOW_EXPERIMENTAL,
        ),
        (
            "v1.54.0-alpha.2",
            {"allow_experimental": True},
            Severity.WARNING,
            Override.ALLOW_EXPERIMENTAL,
        ),
        ("v1.54.0-alpha.2", {"force": True}, Severity.BLOCKER, Override.ALLOW_EXPERIMENTAL),
    ],
)
def test_prerelease_needs_its_opt_in(
    target: str, flags: dict[str, bool], severity: Severity, override: str
) -> None:
    found = check_target(V(target), V("v1.53.2"), RELEASES, PolicyOptions(today=TODAY, **flags))
    f = only(found, P.PRERELEASE_TARGET)
    assert (f.severity, f.override) == (severity, override)
    if severity == Severity.WARNING:
        assert f"passed by {override}" in f.message


def test_final_release_needs_no_opt_in() -> None:
    assert check_target(V("v1.54.5"), V("v1.53.2"), RELEASES, OPTS) == []


@pytest.mark.parametrize(
    ("target", "unknown", "words"),
    [
        ("v1.54.5", False, ""),
        ("v1.54.6", True, "newest known: v1.54.5"),
        ("v1.56.0", True, "newer than the release data"),
        ("v1.54.0-rc.1", True, "pre-release"),
    ],
)
def test_unknown_release_is_a_warning(target: str, unknown: bool, words: str) -> None:
    opts = PolicyOptions(today=TODAY, allow_experimental=True)
    found = check_target(V(target), V("v1.53.2"), RELEASES, opts)
    if unknown:
        f = only(found, P.UNKNOWN_RELEASE)
        assert f.severity == Severity.WARNING and words in f.message
    else:
        assert P.UNKNOWN_RELEASE not in codes(found)


def test_unknown_release_for_a_minor_the_data_lacks() -> None:
    gap = release_data_from(
        [
            _rel(52, TODAY - timedelta(days=300), TODAY + timedelta(days=9)),
            _rel(54, TODAY - timedelta(days=10), TODAY + timedelta(days=400)),
        ],
        generated=TODAY,
    )
    f = only(check_target(V("v1.53.1"), V("v1.52.2"), gap, OPTS), P.UNKNOWN_RELEASE)
    assert "no 1.53 series" in f.message


@pytest.mark.parametrize(
    ("target", "in_window"),
    [
        ("v1.50.5", False),  # EOL yesterday
        ("v1.51.5", False),  # EOL today but four minors are live: not among the newest three
        ("v1.52.5", True),
        ("v1.54.5", True),
        ("v1.49.0", False),  # older than the data
        ("v1.56.0", True),  # newer than the data: not judged (unknown-release warning)
        ("v1.55.0-rc.1", True),  # pre-release of an unreleased minor: not judged
    ],
)
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("allow", [False, True])
def test_support_window(target: str, in_window: bool, strict: bool, allow: bool) -> None:
    opts = PolicyOptions(
        today=TODAY, strict=strict, allow_unsupported=allow, allow_experimental=True
    )
    found = check_target(V(target), V("v1.49.0"), RELEASES, opts)
    if in_window:
        assert P.UNSUPPORTED_TARGET not in codes(found)
        return
    f = only(found, P.UNSUPPORTED_TARGET)
    assert f.override == Override.ALLOW_UNSUPPORTED
    assert f.severity == (Severity.BLOCKER if strict and not allow else Severity.WARNING)
    assert "1.52, 1.53, 1.54" in f.message


def test_window_edge_eol_today_counts() -> None:
    # only 1.51 (ends today) and 1.50 (ended yesterday) exist
    data = release_data_from(
        [
            _rel(50, TODAY - timedelta(days=500), TODAY - timedelta(days=1)),
            _rel(51, TODAY - timedelta(days=400), TODAY),
        ],
        generated=TODAY,
    )
    strict = PolicyOptions(today=TODAY, strict=True)
    assert P.UNSUPPORTED_TARGET not in codes(check_target(V("v1.51.5"), V("v1.50.5"), data, strict))
    assert P.UNSUPPORTED_TARGET in codes(check_target(V("v1.50.5"), V("v1.50.5"), data, strict))


@pytest.mark.parametrize(("age", "stale"), [(0, False), (120, False), (121, True)])
def test_stale_release_data(age: int, stale: bool) -> None:
    data = ReleaseData(RELEASES.minors, generated=TODAY - timedelta(days=age))
    found = check_target(V("v1.54.5"), V("v1.54.5"), data, OPTS)
    assert (P.RELEASE_DATA_STALE in codes(found)) is stale


# --------------------------------------------------------------------------- kubeadm apply


def apply(
    cluster: str,
    target: str,
    kubeadm: str | None = None,
    kubelets: Mapping[str, str | None] | None = None,
    **flags: bool,
) -> list[Finding]:
    kl = {n: (V(v) if v else None) for n, v in (kubelets or {}).items()}
    return kubeadm_apply_findings(
        V(cluster), V(target), V(kubeadm or target), kl, PolicyOptions(today=TODAY, **flags)
    )


def test_a_normal_hop_is_clean() -> None:
    assert apply("v1.29.3", "v1.30.2", kubelets={"cp": "v1.29.3", "w": "v1.27.1"}) == []
    assert apply("v1.30.2", "v1.30.2") == []  # re-running a failed apply at the same version


@pytest.mark.parametrize(
    ("cluster", "target", "code"),
    [
        ("v1.28.4", "v1.29.0", None),
        ("v1.28.4", "v1.30.0", P.KUBEADM_SKIP_MINOR),
        ("v1.28.4", "v1.31.0", P.KUBEADM_SKIP_MINOR),
        ("v1.30.4", "v1.29.0", None),
        ("v1.30.4", "v1.28.0", P.KUBEADM_DOWNGRADE_SKEW),
        ("v1.28.4", "v2.28.0", P.KUBEADM_SKIP_MINOR),  # another major is never "one minor"
    ],
)
def test_one_minor_at_a_time_is_mandatory(cluster: str, target: str, code: str | None) -> None:
    found = apply(cluster, target, force=True)
    if code is None:
        assert found == []
    else:
        f = only(found, code)
        assert f.severity == Severity.BLOCKER and f.override is None  # --force cannot pass it


@pytest.mark.parametrize(
    ("cluster", "target", "code"),
    [
        ("v1.28.4", "v1.30.0-rc.1", P.KUBEADM_SKIP_MINOR),
        ("v1.30.4", "v1.28.0-rc.1", P.KUBEADM_DOWNGRADE_SKEW),
    ],
)
def test_one_minor_at_a_time_is_forceable_for_a_prerelease(
    cluster: str, target: str, code: str
) -> None:
    f = only(apply(cluster, target), code)
    assert (f.severity, f.override) == (Severity.BLOCKER, Override.FORCE)
    f = only(apply(cluster, target, force=True), code)
    assert (f.severity, f.override) == (Severity.WARNING, Override.FORCE)


@pytest.mark.parametrize(
    ("kubeadm", "target", "too_old"),
    [
        ("v1.30.2", "v1.29.0", False),  # minimum control plane = v1.29.0
        ("v1.30.2", "v1.28.15", True),
        ("v1.30.2", "v1.29.0-rc.1", True),  # below v1.29.0
        ("v1.30.0-rc.1", "v1.29.0", False),
    ],
)
def test_kubeadm_minimum_control_plane_version(kubeadm: str, target: str, too_old: bool) -> None:
    found = apply("v1.29.0", target, kubeadm, force=True, allow_experimental=True)
    if too_old:
        f = only(found, P.KUBEADM_TARGET_TOO_OLD)
        assert f.severity == Severity.BLOCKER and f.override is None
    else:
        assert P.KUBEADM_TARGET_TOO_OLD not in codes(found)


@pytest.mark.parametrize(
    ("kubeadm", "target", "code", "override"),
    [
        ("v1.30.2", "v1.30.2", None, None),
        ("v1.30.2+b", "v1.30.2+a", None, None),
        ("v1.30.3", "v1.30.2", None, None),  # newer patch of the same minor is fine
        ("v1.30.1", "v1.30.2", P.KUBEADM_UPGRADE_FIRST, Override.FORCE),
        ("v1.30.0-rc.1", "v1.30.0", P.KUBEADM_UPGRADE_FIRST, Override.FORCE),
        ("v1.29.9", "v1.30.0", P.KUBEADM_TOO_OLD, None),  # mandatory
        ("v1.29.9", "v1.30.0-rc.1", P.KUBEADM_TOO_OLD, Override.FORCE),  # as kubeadm does
        ("v1.31.0", "v1.30.5", P.KUBEADM_TOO_NEW, Override.FORCE),
        ("v1.31.0-alpha.1", "v1.30.5", P.KUBEADM_TOO_NEW, Override.FORCE),
    ],
)
def test_kubeadm_against_target(
    kubeadm: str, target: str, code: str | None, override: str | None
) -> None:
    found = apply("v1.30.0", target, kubeadm)
    found = [f for f in found if f.code != P.KUBEADM_TARGET_TOO_OLD]
    if code is None:
        assert found == []
        return
    f = only(found, code)
    assert (f.severity, f.override) == (Severity.BLOCKER, override)
    if override:
        g = only(apply("v1.30.0", target, kubeadm, force=True), code)
        assert g.severity == Severity.WARNING


@pytest.mark.parametrize(
    ("kubeadm", "kubelet", "flagged"),
    [
        ("v1.30.1", "v1.27.9", False),  # 3 below: allowed from kubeadm 1.29 on
        ("v1.30.1", "v1.26.9", True),
        ("v1.29.0", "v1.26.0", False),
        ("v1.29.0", "v1.25.0", True),
        ("v1.28.5", "v1.27.0", False),  # kubeadm <= 1.28: 1 below at most
        ("v1.28.5", "v1.26.9", True),
        ("v1.28.5", "v1.28.5", False),
    ],
)
def test_kubelets_too_old_for_kubeadm(kubeadm: str, kubelet: str, flagged: bool) -> None:
    target = kubeadm
    cluster = V(kubeadm).bump_minor(-1)
    found = apply(str(cluster), target, kubeadm, kubelets={"w-1": kubelet, "cp-1": str(cluster)})
    if flagged:
        f = only(found, P.KUBEADM_KUBELET_TOO_OLD)
        assert (f.severity, f.override, f.node) == (Severity.BLOCKER, Override.FORCE, "w-1")
        assert kubelet in f.message and target in f.message
    else:
        assert found == []


def test_unparsable_kubelet_is_forceable() -> None:
    f = only(apply("v1.29.0", "v1.30.0", kubelets={"w-2": None}), P.KUBELET_VERSION_UNKNOWN)
    assert (f.severity, f.override, f.node) == (Severity.BLOCKER, Override.FORCE, "w-2")
    f = only(
        apply("v1.29.0", "v1.30.0", kubelets={"w-2": None}, force=True), P.KUBELET_VERSION_UNKNOWN
    )
    assert f.severity == Severity.WARNING


# --------------------------------------------------------------------------- kubeadm node


@pytest.mark.parametrize(
    ("cluster", "kubeadm", "code"),
    [
        ("v1.29.3", "v1.29.3", None),
        ("v1.29.3", "v1.29.1", None),  # older patch: kubeadm upgrade node does not mind
        ("v1.29.3", "v1.30.0", None),  # one minor above: allowed
        ("v1.29.3", "v1.31.0", P.KUBEADM_NODE_TOO_NEW),
        ("v1.29.0-rc.1", "v1.30.0", P.KUBEADM_NODE_TOO_NEW),  # below v1.29.0
        ("v1.29.3", "v1.28.9", P.KUBEADM_NODE_TOO_OLD),
    ],
)
def test_kubeadm_upgrade_node(cluster: str, kubeadm: str, code: str | None) -> None:
    found = kubeadm_node_findings(V(cluster), V(kubeadm), "w-1")
    if code is None:
        assert found == []
        return
    f = only(found, code)
    assert f.node == "w-1" and f.severity == Severity.BLOCKER
    assert f.override == (Override.FORCE if code == P.KUBEADM_NODE_TOO_OLD else None)
    forced = only(
        kubeadm_node_findings(
            V(cluster), V(kubeadm), "w-1", PolicyOptions(today=TODAY, force=True)
        ),
        code,
    )
    assert forced.severity == (
        Severity.WARNING if code == P.KUBEADM_NODE_TOO_OLD else Severity.BLOCKER
    )


# --------------------------------------------------------------------------- skew


def vs(**versions: str) -> dict[str, KubeVersion]:
    return {k.replace("_", "-"): V(v) for k, v in versions.items()}


def test_empty_state_has_no_findings() -> None:
    assert skew_findings(ClusterState(apiservers={})) == []
    assert skew_findings(ClusterState(apiservers={}, kubelets=vs(w="v1.20.0"))) == []


@pytest.mark.parametrize(
    ("apis", "bad"),
    [
        ({"cp-1": "v1.29.1", "cp-2": "v1.28.9"}, []),
        ({"cp-1": "v1.29.1", "cp-2": "v1.29.0"}, []),
        ({"cp-1": "v1.29.1", "cp-2": "v1.27.9"}, ["cp-2"]),
        ({"cp-1": "v1.29.1", "cp-2": "v1.28.0", "cp-3": "v1.27.0"}, ["cp-3"]),
    ],
)
def test_ha_apiservers_within_one_minor(apis: dict[str, str], bad: list[str]) -> None:
    found = skew_findings(ClusterState(apiservers={k: V(v) for k, v in apis.items()}))
    assert [f.node for f in found] == bad
    for f in found:
        assert f.code == P.SKEW_APISERVER and f.severity == Severity.BLOCKER
        assert apis[f.node or ""] in f.message and "v1.29.1" in f.message and "cp-1" in f.message


@pytest.mark.parametrize(
    ("apis", "kubelet", "code"),
    [
        (["v1.30.0"], "v1.30.9", None),  # newer patch of the same minor is fine
        (["v1.30.0"], "v1.31.0", P.SKEW_KUBELET_TOO_NEW),
        (["v1.30.0", "v1.29.0"], "v1.30.0", P.SKEW_KUBELET_TOO_NEW),  # newer than cp at 1.29
        (["v1.30.0", "v1.29.0"], "v1.29.3", None),
        (["v1.30.0"], "v1.27.0", None),  # 3 behind
        (["v1.30.0"], "v1.26.9", P.SKEW_KUBELET_TOO_OLD),
        (["v1.30.0", "v1.29.0"], "v1.27.0", None),  # n-3 with apiservers at n and n-1
        (["v1.30.0", "v1.29.0"], "v1.26.0", P.SKEW_KUBELET_TOO_OLD),
        (["v1.28.0"], "v1.25.0", None),  # 1.25 may be 3 behind
        (["v1.27.0"], "v1.24.9", P.SKEW_KUBELET_TOO_OLD),  # older than 1.25: 2 at most
        (["v1.26.0"], "v1.24.9", None),
    ],
)
def test_kubelet_skew(apis: list[str], kubelet: str, code: str | None) -> None:
    state = ClusterState(
        apiservers={f"cp-{i}": V(a) for i, a in enumerate(apis, 1)}, kubelets=vs(w_1=kubelet)
    )
    found = skew_findings(state)
    if code is None:
        assert found == []
        return
    f = only(found, code)
    assert f.node == "w-1" and f.severity == Severity.BLOCKER and f.override is None
    assert kubelet in f.message


@pytest.mark.parametrize(
    ("kubelet", "proxy", "bad"),
    [
        ("v1.30.0", "v1.30.0", False),
        ("v1.27.0", "v1.30.0", False),  # 3 apart from its kubelet
        ("v1.30.0", "v1.27.0", False),
        ("v1.27.0", "v1.26.0", True),  # 4 behind the apiserver
        ("v1.30.0", "v1.31.0", True),  # newer than the apiserver
    ],
)
def test_kube_proxy_skew(kubelet: str, proxy: str, bad: bool) -> None:
    state = ClusterState(
        apiservers=vs(cp="v1.30.0"), kubelets=vs(w=kubelet), kube_proxies=vs(w=proxy)
    )
    found = [f for f in skew_findings(state) if f.code == P.SKEW_KUBE_PROXY]
    assert bool(found) is bad


@pytest.mark.parametrize(
    ("api", "kubelet", "proxy", "found"),
    [
        ("v1.29.0", "v1.29.0", "v1.26.0", 0),  # 3 apart
        ("v1.29.0", "v1.29.0", "v1.25.0", 2),  # 4: breaks both the apiserver and kubelet rule
        ("v1.26.0", "v1.26.0", "v1.24.0", 0),  # older than 1.25: 2 apart allowed
        ("v1.26.0", "v1.26.0", "v1.23.0", 2),  # ... 3 is not
    ],
)
def test_kube_proxy_within_its_skew_of_the_kubelet_beside_it(
    api: str, kubelet: str, proxy: str, found: int
) -> None:
    state = ClusterState(apiservers=vs(cp=api), kubelets=vs(w=kubelet), kube_proxies=vs(w=proxy))
    got = skew_findings(state)
    assert codes(got) == [P.SKEW_KUBE_PROXY] * found
    if found:
        assert any("beside it" in f.message for f in got)


@pytest.mark.parametrize("kind", ["controller_managers", "schedulers"])
@pytest.mark.parametrize(
    ("apis", "ctrl", "bad"),
    [
        # mid-upgrade HA: each controller matches its local apiserver
        ({"cp-1": "v1.30.0", "cp-2": "v1.29.0"}, {"cp-1": "v1.30.0", "cp-2": "v1.29.0"}, []),
        ({"cp-1": "v1.30.0", "cp-2": "v1.29.0"}, {"cp-2": "v1.30.0"}, ["cp-2"]),  # newer, local
        ({"cp-1": "v1.30.0"}, {"cp-1": "v1.29.5"}, []),  # n-1
        ({"cp-1": "v1.30.0"}, {"cp-1": "v1.28.5"}, ["cp-1"]),  # n-2
        ({"cp-1": "v1.30.0", "cp-2": "v1.29.0"}, {"x": "v1.30.0"}, ["x"]),  # no local: oldest
        ({"cp-1": "v1.30.0", "cp-2": "v1.29.0"}, {"x": "v1.29.0"}, []),
        ({"cp-1": "v1.30.0"}, {"cp-1": "v1.30.7"}, []),  # patch newer is fine
    ],
)
def test_controller_manager_and_scheduler_skew(
    kind: str, apis: dict[str, str], ctrl: dict[str, str], bad: list[str]
) -> None:
    state = ClusterState(
        apiservers={k: V(v) for k, v in apis.items()}, **{kind: {k: V(v) for k, v in ctrl.items()}}
    )
    found = skew_findings(state)
    assert [f.node for f in found] == bad
    code = P.SKEW_CONTROLLER_MANAGER if kind == "controller_managers" else P.SKEW_SCHEDULER
    for f in found:
        assert f.code == code and f.severity == Severity.BLOCKER
        assert ctrl[f.node or ""] in f.message


@pytest.mark.parametrize(
    ("kubectl", "warned"),
    [
        ("v1.30.0", False),
        ("v1.31.0", False),
        ("v1.29.0", False),
        ("v1.32.0", True),
        ("v1.28.9", True),
    ],
)
def test_kubectl_skew_is_a_warning(kubectl: str, warned: bool) -> None:
    found = skew_findings(ClusterState(apiservers=vs(cp="v1.30.0"), kubectl=vs(admin=kubectl)))
    if warned:
        f = only(found, P.SKEW_KUBECTL)
        assert f.severity == Severity.WARNING and f.node == "admin"
        assert kubectl in f.message and "v1.30.0" in f.message
    else:
        assert found == []


def test_kubectl_must_suit_every_apiserver() -> None:
    state = ClusterState(apiservers=vs(cp_1="v1.30.0", cp_2="v1.29.0"), kubectl=vs(a="v1.31.0"))
    assert codes(skew_findings(state)) == [P.SKEW_KUBECTL]


# --------------------------------------------------------------------------- from facts


def test_state_from_facts_assumes_cluster_version_for_unknown_components() -> None:
    facts = Facts(
        ClusterFacts("c", V("v1.30.2")),
        (
            NodeFacts(
                "cp-1",
                "control-plane",
                kubelet=V("v1.30.2"),
                control_plane=ControlPlaneVersions(V("v1.30.2"), V("v1.30.2"), None),
            ),
            NodeFacts("cp-2", "control-plane", kubelet=None, control_plane=None),
            NodeFacts("w-1", "worker", kubelet=V("v1.29.0"), kubectl=V("v1.29.0")),
        ),
    )
    state, notes = state_from_facts(facts)
    assert state.apiservers == {"cp-1": V("v1.30.2"), "cp-2": V("v1.30.2")}
    assert state.schedulers["cp-1"] == V("v1.30.2")
    assert state.kubelets == {"cp-1": V("v1.30.2"), "w-1": V("v1.29.0")}
    assert state.kubectl == {"w-1": V("v1.29.0")}
    assert [(n.code, n.node, n.severity) for n in notes] == [
        (P.CONTROL_PLANE_VERSION_UNKNOWN, "cp-1", Severity.INFO),
        (P.CONTROL_PLANE_VERSION_UNKNOWN, "cp-2", Severity.INFO),
    ]
    assert "kube-scheduler" in notes[0].message


def test_options_report_their_override_flags() -> None:
    assert PolicyOptions(today=TODAY).overrides == ()
    o = PolicyOptions(
        today=TODAY,
        force=True,
        allow_experimental=True,
        allow_release_candidate=True,
        allow_unsupported=True,
        strict=True,
    )
    assert o.overrides == (
        Override.FORCE,
        Override.ALLOW_EXPERIMENTAL,
        Override.ALLOW_RC,
        Override.ALLOW_UNSUPPORTED,
    )


def test_every_emitted_code_is_documented() -> None:
    emitted = {
        v
        for k, v in vars(P).items()
        if k.isupper() and isinstance(v, str) and v.isupper() and "_" in v
    }
    assert emitted <= set(P.CODES)
